package runner

// A server the user brings (--target): checked before anything changes,
// started and stopped when the run owns it (--server-cmd), and watched for
// what it spends and which of its own limits it meets.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"golang.org/x/sys/unix"
)

// serverStartWait is how long a --server-cmd gets to listen: a JVM starts
// in about a second here; a cold one on a loaded host takes several.
const serverStartWait = 30 * time.Second

// serverStopGrace is how long a --server-cmd gets after SIGTERM.
const serverStopGrace = 5 * time.Second

// validateTarget checks --target and what goes with it.
func validateTarget(cfg Config) error {
	switch cfg.Mode {
	case ModeDial:
		return validateDial(cfg)
	case ModeServe:
		if cfg.Target.IsValid() || cfg.ServerCmd != "" || len(cfg.ServerPIDs) > 0 {
			return badInput("serve is the server: --target, --server-cmd and --server-pid are for run and dial")
		}
		if cfg.Exchange != "" && cfg.Exchange != ExchangeNumbered {
			return badInput("serve speaks numbered: each connection gets its number, the dialer echoes it")
		}
	}
	if cfg.Of != 0 || cfg.Index != 0 {
		return badInput("--index and --of split the connections between dialers: they are for dial")
	}
	if !cfg.External() {
		switch {
		case cfg.ServerCmd != "" || len(cfg.ServerPIDs) > 0:
			return badInput("--server-cmd and --server-pid name the server at --target; give --target ADDR:PORT")
		case cfg.Exchange != "" && cfg.Exchange != ExchangeNumbered:
			return badInput("--exchange %s is for a server you bring (--target); the built-in server speaks numbered", cfg.Exchange)
		}
		return nil
	}
	t := cfg.Target
	switch {
	case !t.Addr().Is4() || t.Port() == 0:
		return badInput("--target must be an IPv4 address:port of this host, got %s", t)
	case t.Addr().IsUnspecified():
		return badInput("--target %s: give the address the server listens on, such as 127.0.0.1:%d", t, t.Port())
	case cfg.Exchange == ExchangeNumbered:
		return badInput("--exchange numbered is the built-in server's protocol; a server you bring takes echo (an echo server) or none (connect and hold)")
	case cfg.Exchange == ExchangeNone && cfg.Payload > 0:
		return badInput("--payload needs an exchange to carry it; with --exchange none nothing is sent")
	case cfg.ServerCmd != "" && len(cfg.ServerPIDs) > 0:
		return badInput("--server-cmd starts the server and --server-pid names one already running: give one of them")
	case strings.TrimSpace(cfg.ServerCmd) == "" && cfg.ServerCmd != "":
		return badInput("--server-cmd is empty")
	}
	if !t.Addr().IsLoopback() && !isLocal(t.Addr()) {
		return badInput("--target %s is not an address of this host: c10mprobe measures both ends on one host (loopback or one of its own interfaces)", t)
	}
	for _, pid := range cfg.ServerPIDs {
		if pid <= 0 {
			return badInput("--server-pid must be a process id, got %d", pid)
		}
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			return badInput("--server-pid %d: no such process", pid)
		}
	}
	if cfg.ServerCmd == "" && !listening(t) {
		return badInput("--target %s: nothing listens there (ss -ltn 'sport = :%d'); start the server, or give --server-cmd to have c10mprobe start it", t, t.Port())
	}
	if cfg.ServerCmd != "" && listening(t) {
		return badInput("--target %s already has a listener, so --server-cmd's server could not bind it; stop that one, or name it with --server-pid", t)
	}
	return nil
}

// isLocal says whether a is configured on one of this host's interfaces.
func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// listening says whether a TCP listener takes connections to t: on t
// itself, or on its port's IPv4 or IPv6 wildcard (a JVM listens on [::],
// which takes IPv4 too unless IPV6_V6ONLY).
func listening(t netip.AddrPort) bool {
	_, ok := listener(t)
	return ok
}

// listener finds the listening socket that takes connections to t.
func listener(t netip.AddrPort) (sockdiag.Socket, bool) {
	var found sockdiag.Socket
	ok := false
	_ = dumpTCP(1<<sockdiag.StateListen, func(s *sockdiag.Socket) {
		if s.Local.Port() == t.Port() && (s.Local.Addr() == t.Addr() || s.Local.Addr().IsUnspecified()) && !ok {
			found, ok = *s, true
		}
	})
	return found, ok
}

// dumpTCP dumps IPv4 and IPv6 sockets, an IPv4-mapped IPv6 address shown as
// the IPv4 address it stands for: a server on [::] holds its IPv4
// connections in TCPv6 sockets.
func dumpTCP(states uint32, fn func(*sockdiag.Socket)) error {
	if err := sockdiag.DumpIPv4(states, fn); err != nil {
		return err
	}
	return sockdiag.DumpIPv6(states, func(s *sockdiag.Socket) {
		s.Local = netip.AddrPortFrom(s.Local.Addr().Unmap(), s.Local.Port())
		s.Remote = netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())
		if s.Local.Addr() == netip.IPv6Unspecified() {
			s.Local = netip.AddrPortFrom(netip.IPv4Unspecified(), s.Local.Port())
		}
		fn(s)
	})
}

// target is the server a run dials: its processes and, for --server-cmd,
// the shell command the run started and must stop.
type target struct {
	addr  netip.AddrPort
	roots []int     // --server-pid, or the --server-cmd's shell
	cmd   *exec.Cmd // nil for --server-pid
	log   string    // the --server-cmd's stdout and stderr
	done  chan struct{}
}

// startServer runs --server-cmd in its own process group (and the run's
// memory cgroup, if any), waits for it to listen, and records its group
// so that restore stops it after a SIGKILL of c10mprobe.
func (r *Runner) startServer() error {
	t := r.target
	if r.cfg.ServerCmd == "" {
		return nil
	}
	t.log = filepath.Join(r.cfg.OutDir, rundir.ServerLog)
	out, err := os.Create(t.log)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", r.cfg.ServerCmd)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group: stopped as one (a master and its forked workers), and
	// a terminal's SIGINT reaches c10mprobe alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting --server-cmd: %w", err)
	}
	t.cmd, t.roots, t.done = cmd, []int{cmd.Process.Pid}, make(chan struct{})
	// Its start time before anything reaps it: a server that exits at once
	// stays a zombie, its /proc/PID/stat readable, until Wait.
	st, err := procfs.ReadStat(cmd.Process.Pid)
	go func() { _ = cmd.Wait(); close(t.done) }()
	if err == nil {
		rec := fmt.Sprintf("%d %d\n", cmd.Process.Pid, st.StartTime)
		err = os.WriteFile(filepath.Join(r.cfg.OutDir, rundir.ServerGroup), []byte(rec), 0o644)
	}
	if err != nil {
		return fmt.Errorf("recording the server's process group: %w", err)
	}
	if r.memcap != nil {
		if err := r.memcap.Add(cmd.Process.Pid); err != nil {
			return err
		}
	}
	fmt.Fprintf(r.cfg.Log, "server: started %q (pid %d), waiting for it to listen on %s\n", r.cfg.ServerCmd, cmd.Process.Pid, t.addr)
	deadline := time.Now().Add(serverStartWait)
	for !listening(t.addr) {
		select {
		case <-t.done:
			return fmt.Errorf("--server-cmd exited (%s) before it listened on %s; its last output:\n%s", cmd.ProcessState, t.addr, lastLines(t.log, 10))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("--server-cmd did not listen on %s within %s; its last output:\n%s", t.addr, serverStartWait, lastLines(t.log, 10))
		}
	}
	return nil
}

// stopServer stops a --server-cmd's process group: SIGTERM, then SIGKILL
// after serverStopGrace. A --server-pid server is the user's and is left.
func (r *Runner) stopServer() {
	t := r.target
	if t == nil || t.cmd == nil {
		return
	}
	pgid := t.cmd.Process.Pid
	_ = unix.Kill(-pgid, unix.SIGTERM)
	if !groupGone(pgid, serverStopGrace) {
		fmt.Fprintf(r.cfg.Log, "server: still running %s after SIGTERM; killed\n", serverStopGrace)
		_ = unix.Kill(-pgid, unix.SIGKILL)
		if !groupGone(pgid, serverStopGrace) {
			fmt.Fprintf(r.cfg.Log, "warning: the server's process group %d survived SIGKILL; c10mprobe restore %s stops it\n", pgid, r.cfg.OutDir)
			return
		}
	}
	<-t.done
	os.Remove(filepath.Join(r.cfg.OutDir, rundir.ServerGroup))
	t.cmd = nil
}

// groupAlive says whether any process of the group is left; the shell
// itself, once exited and not yet reaped, does not count.
func groupAlive(pgid int) bool { return groupStartedSince(pgid, 0) }

// lastLines returns the last n lines of a file, for an error message.
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return "  (none)"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// stopKilledRunServer stops the --server-cmd a killed run left running, if
// the process recorded is still the one it started, and says what it did.
func stopKilledRunServer(dir string) (string, error) {
	pgid, alive, err := killedRunServer(dir)
	if pgid == 0 || err != nil {
		return "", err
	}
	what := ""
	if alive {
		_ = unix.Kill(-pgid, unix.SIGKILL)
		if !groupGone(pgid, serverStopGrace) {
			return "", fmt.Errorf("the server's process group %d survived SIGKILL", pgid)
		}
		what = fmt.Sprintf("the server's process group %d (--server-cmd)", pgid)
	}
	return what, os.Remove(filepath.Join(dir, rundir.ServerGroup))
}

// killedRunServer reads the server group a run recorded: 0 when none, and
// whether a process of it still runs. The leader may have exited and left
// its group running: any member started no earlier than it is the run's.
func killedRunServer(dir string) (pgid int, alive bool, err error) {
	data, ok, err := host.ReadRecord(dir, rundir.ServerGroup)
	if !ok || err != nil {
		return 0, false, err
	}
	var start uint64
	if _, err := fmt.Sscanf(data, "%d %d", &pgid, &start); err != nil || pgid <= 1 {
		return 0, false, fmt.Errorf("%s: %q is not a process group and start time", rundir.ServerGroup, data)
	}
	return pgid, groupStartedSince(pgid, start), nil
}

// groupGone waits up to d for every process of the group to exit.
func groupGone(pgid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); groupAlive(pgid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// groupStartedSince says whether a live process of group pgid started at
// or after start (clock ticks after boot): not a reused group id.
func groupStartedSince(pgid int, start uint64) bool {
	pids, _ := procfs.Pids()
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && st.PGrp == pgid && st.StartTime >= start && st.State != 'Z' {
			return true
		}
	}
	return false
}

// serverState is what the target's processes held at one moment. Its
// processes are --server-pid's, the --server-cmd's shell and their
// descendants, or else the holders of the listening socket.
type serverState struct {
	Pids    []int
	Pss     uint64
	PssAnon uint64
	Threads uint64
	FDs     uint64 // the most one process held: RLIMIT_NOFILE is per process
	Limits  procfs.Limits
	// From its listening socket (sock_diag): connections waiting in its
	// accept queue, and the queue's length, min(backlog, somaxconn).
	AcceptQueue uint32
	Backlog     uint32
	Listening   bool
	HostTasks   int64 // threads on the whole host, against kernel.threads-max
}

// read reads the target's processes and listener now.
func (t *target) read() (s serverState, err error) {
	if l, ok := listener(t.addr); ok {
		// For a listener, rqueue is the accept queue's length and wqueue
		// its limit (inet_diag_msg_common_fill, tcp_diag_get_info).
		s.AcceptQueue, s.Backlog, s.Listening = l.RQueue, l.WQueue, true
		if len(t.roots) == 0 {
			// Neither --server-pid nor --server-cmd: the server is whoever
			// holds the listener, found once.
			if t.roots, err = procfs.SocketOwners(l.Inode); err != nil {
				return s, err
			}
		}
	}
	s.HostTasks, _ = procfs.Tasks()
	pids, err := procfs.Tree(t.roots)
	if err != nil {
		return s, err
	}
	if len(pids) == 0 {
		return s, fmt.Errorf("none of the server's processes is running")
	}
	s.Pids = pids
	fullest := pids[0]
	for _, pid := range pids {
		p, err := procfs.ReadProcess(pid)
		if err != nil {
			continue // exited between the walk and the read
		}
		s.Pss += p.Pss
		s.PssAnon += p.PssAnon
		s.Threads += p.Threads
		if p.FDs > s.FDs {
			s.FDs, fullest = p.FDs, pid
		}
	}
	// RLIMIT_NOFILE is per process: the fullest one's is the one that binds.
	s.Limits, _ = procfs.ReadLimits(fullest)
	return s, nil
}

// sampleServer reads the target now into *into.
func (r *Runner) sampleServer(into **serverState) error {
	s, err := r.target.read()
	if err != nil {
		return fmt.Errorf("reading the server at %s: %w", r.connectTo, err)
	}
	*into = &s
	return nil
}

// verifyHeld is --exchange none's verification: connections ESTABLISHED at
// both ends (sock_diag), less those still waiting in the server's accept
// queue, which the kernel completed but the server never took.
func (r *Runner) verifyHeld() {
	ours := map[netip.AddrPort]bool{}
	var theirs []netip.AddrPort
	err := dumpTCP(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		switch {
		case s.Remote == r.connectTo:
			ours[s.Local] = true
		case s.Local == r.connectTo:
			theirs = append(theirs, s.Remote)
		}
	})
	if err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: verifying held connections with sock_diag: %v\n", err)
		return
	}
	var both uint64
	for _, remote := range theirs {
		if ours[remote] {
			both++
		}
	}
	var waiting uint64
	if l, ok := listener(r.connectTo); ok {
		waiting = uint64(l.RQueue)
	}
	held := both - min(both, waiting)
	r.mu.Lock()
	r.heldVerified = &held
	r.mu.Unlock()
}

// serverLimit names the brought server's own limit when it explains a run
// that fell short: its fds at RLIMIT_NOFILE, the host's threads at
// threads-max or pid_max, or its accept queue full. ok is false when none
// of them was reached.
func (r *Runner) serverLimit(verified uint64) (*Limit, bool) {
	p := r.serverPeak
	if p == nil {
		return nil, false
	}
	// At EMFILE a server holds every fd it may; a few below is one that
	// keeps a margin (nginx frees one to accept and close).
	if nofile := p.Limits.NoFile; nofile > 0 && p.FDs+2 >= nofile {
		return &Limit{Kind: limit.ServerFds, At: verified, Detail: fmt.Sprintf(
			"the server's RLIMIT_NOFILE of %s binds at %s connections: its fullest process held %s fds; raise it (LimitNOFILE= in its systemd unit, ulimit -n before it starts, or setrlimit in the server)",
			units.Count(nofile), units.Count(verified), units.Count(p.FDs))}, true
	}
	threadsMax := r.host.ThreadsMax
	if pm := r.host.PidMax; pm > 0 && (threadsMax == 0 || pm < threadsMax) {
		threadsMax = pm
	}
	perConn := 0.0
	if r.serverIdle != nil && verified > 0 {
		perConn = (float64(p.Threads) - float64(r.serverIdle.Threads)) / float64(verified)
	}
	if perConn >= 0.5 && threadsMax > 0 && p.HostTasks+threadsPerWorker >= threadsMax {
		return &Limit{Kind: limit.ServerThreads, At: verified, Detail: fmt.Sprintf(
			"the server starts %.1f threads a connection, and the host's threads reached %s of the %s kernel.threads-max and kernel.pid_max allow: its next thread failed (EAGAIN); raise kernel.threads-max and kernel.pid_max, or serve connections without a thread each",
			perConn, units.Count(p.HostTasks), units.Count(threadsMax))}, true
	}
	if nproc := p.Limits.NProc; perConn >= 0.5 && nproc > 0 && p.Threads+1 >= nproc {
		return &Limit{Kind: limit.ServerThreads, At: verified, Detail: fmt.Sprintf(
			"the server starts %.1f threads a connection and holds %s, at its RLIMIT_NPROC of %s (which counts every thread of its user); raise it (LimitNPROC=, ulimit -u)",
			perConn, units.Count(p.Threads), units.Count(nproc))}, true
	}
	if p.Listening && p.Backlog > 0 && p.AcceptQueue >= p.Backlog {
		return &Limit{Kind: limit.ServerBacklog, At: verified, Detail: fmt.Sprintf(
			"the server's accept queue was full (%s of %s: the backlog it gave listen(), capped by net.core.somaxconn when it listened): it accepted more slowly than connections came, and the kernel dropped the rest's SYNs; raise its backlog and somaxconn, accept faster, or pace with --rate",
			units.Count(uint64(p.AcceptQueue)), units.Count(uint64(p.Backlog)))}, true
	}
	return nil, false
}

// serverResult fills in what the brought server spent.
func (r *Runner) serverResult(res *Result) {
	if !r.cfg.External() {
		return
	}
	s := &res.Server
	idle, peak := r.serverIdle, r.serverPeak
	if peak == nil {
		peak = idle
	}
	if idle == nil {
		return
	}
	s.Pids = peak.Pids
	s.RlimitNoFile, s.RlimitNProc = peak.Limits.NoFile, peak.Limits.NProc
	s.Backlog, s.AcceptQueuePeak = peak.Backlog, peak.AcceptQueue
	sample := func(st *serverState) *ServerSample {
		return &ServerSample{Pss: st.Pss, PssAnon: st.PssAnon, Threads: st.Threads, FDs: st.FDs}
	}
	s.Idle, s.Peak = sample(idle), sample(peak)
	// What its processes hold: the sockets on its port less those still
	// waiting in its accept queue, which no process of it has taken.
	s.Held = res.ServerSockets - min(res.ServerSockets, uint64(peak.AcceptQueue))
	n := float64(s.Held)
	if n == 0 {
		n = float64(res.Established)
	}
	if n > 0 {
		s.PssPerConnection = (float64(peak.Pss) - float64(idle.Pss)) / n
		s.AnonPerConnection = (float64(peak.PssAnon) - float64(idle.PssAnon)) / n
		s.ThreadsPerConnection = (float64(peak.Threads) - float64(idle.Threads)) / n
	}
}

// settleAccepts waits, for --exchange none, until the server has taken
// what it will from its accept queue: empty, or unchanged for half a
// second (a server at its fd limit leaves the rest there), or --timeout.
func (r *Runner) settleAccepts() {
	last, since := uint32(0), time.Now()
	for deadline := time.Now().Add(r.cfg.Timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		l, ok := listener(r.connectTo)
		if !ok || l.RQueue == 0 {
			return
		}
		if l.RQueue != last {
			last, since = l.RQueue, time.Now()
		} else if time.Since(since) > 500*time.Millisecond {
			return
		}
	}
}

// ServerChecks are the preflight rows of the brought server's own limits,
// read from its processes and listener; nil while it is not running yet
// (--server-cmd: they come when it listens, through Config.OnServerUp).
func (r *Runner) ServerChecks() []Check {
	if !r.cfg.External() {
		return nil
	}
	st := r.serverIdle
	if st == nil {
		s, err := r.target.read() // a --server-cmd not yet started reads as none
		if err != nil {
			return nil
		}
		st = &s
	}
	n := uint64(r.cfg.Conns)
	var out []Check
	c := Check{Limit: "server fds", Value: fmt.Sprintf("RLIMIT_NOFILE %s of its process holding the most fds, %s open", nofileText(st.Limits.NoFile), units.Count(st.FDs)),
		Needs: fmt.Sprintf("%s sockets (one fd each)", units.Count(n))}
	c.OK = st.Limits.NoFile == 0 || st.Limits.NoFile-min(st.Limits.NoFile, st.FDs) >= n
	c.Action = "ok"
	if !c.OK {
		c.Action = fmt.Sprintf("binds at about %s connections: raise it (LimitNOFILE=, ulimit -n) and restart the server", units.Count(st.Limits.NoFile-min(st.Limits.NoFile, st.FDs)))
	}
	out = append(out, c)

	ceiling := r.host.ThreadsMax
	if pm := r.host.PidMax; pm > 0 && (ceiling == 0 || pm < ceiling) {
		ceiling = pm
	}
	room := max(0, ceiling-st.HostTasks)
	c = Check{Limit: "server threads", Value: fmt.Sprintf("kernel.threads-max %s, kernel.pid_max %s; it runs %s threads, the host %s",
		units.Count(r.host.ThreadsMax), units.Count(r.host.PidMax), units.Count(st.Threads), units.Count(st.HostTasks)),
		Needs: fmt.Sprintf("%s more if it starts a thread per connection", units.Count(n)), OK: uint64(room) >= n}
	c.Action = "ok"
	if !c.OK {
		c.Action = fmt.Sprintf("a thread-per-connection server binds near %s connections (measured in the run)", units.Count(uint64(room)))
	}
	out = append(out, c)

	c = Check{Limit: "server backlog", Value: fmt.Sprintf("accept queue of %s (its listen() backlog, capped by somaxconn when it listened)", units.Count(uint64(st.Backlog))),
		Needs: fmt.Sprintf("≥ %d (connects in flight, --inflight)", r.cfg.Inflight), OK: int(st.Backlog) >= r.cfg.Inflight}
	c.Action = "ok"
	if !c.OK {
		c.Action = "SYNs are dropped whenever it accepts more slowly than connects arrive: raise its backlog, or lower --inflight"
	}
	return append(out, c)
}

func nofileText(v uint64) string {
	if v == 0 || v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return units.Count(v)
}

// validateDial checks a dialer's target and share: any IPv4 address (the
// server is on another host), a numbered exchange (serve's protocol).
func validateDial(cfg Config) error {
	t := cfg.Target
	switch {
	case !t.IsValid():
		return badInput("dial needs --target ADDR:PORT, the address of c10mprobe serve")
	case !t.Addr().Is4() || t.Port() == 0 || t.Addr().IsUnspecified():
		return badInput("--target must be an IPv4 address:port of the server, got %s", t)
	case cfg.ServerCmd != "" || len(cfg.ServerPIDs) > 0:
		return badInput("dial's server is on another host: --server-cmd and --server-pid are for run")
	case cfg.Exchange != "" && cfg.Exchange != ExchangeNumbered:
		return badInput("dial answers serve's numbered exchange; --exchange %s is for run --target", cfg.Exchange)
	case cfg.Of < 0 || cfg.Index < 0 || (cfg.Of > 0 && cfg.Index >= cfg.Of) || (cfg.Of == 0 && cfg.Index > 0):
		return badInput("--index must be from 0 to --of − 1 (got --index %d --of %d)", cfg.Index, cfg.Of)
	case cfg.Of > cfg.Conns:
		return badInput("--of %d dialers for --conns %d leaves some with nothing to open", cfg.Of, cfg.Conns)
	}
	return nil
}
