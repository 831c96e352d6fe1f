package runner

// What a server the user brought spends, and which of its own limits it
// meets: its processes and listener sampled idle and at the peak, and the
// connections held at both ends when nothing was exchanged.

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/serverlog"
	"net/netip"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

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

// serverLogLines is how many shapes of a server's error lines the result
// quotes: the failure and what it caused, as a user would read them.
const serverLogLines = 3

// digestServerLog reads a --server-cmd's log once the server is stopped:
// what it wrote as it went down counts too (read before, a JVM's log was
// 9 of 319 lines short).
func (r *Runner) digestServerLog(res *Result) {
	if r.target == nil || r.target.log == "" {
		return
	}
	if d, err := serverlog.Of(r.target.log, serverLogLines); err == nil {
		res.Server.Log = d
	}
}

// serverResult fills in what the brought server spent.
func (r *Runner) serverResult(res *Result) {
	if !r.cfg.External() {
		return
	}
	s := &res.Server
	r.mu.Lock()
	s.Exited = r.target.exited
	r.mu.Unlock()
	idle, peak := r.serverIdle, r.serverPeak
	if idle == nil {
		return
	}
	if peak == nil {
		if s.Exited != nil {
			// Gone before the peak: its idle sample is not a peak it had.
			s.Pids, s.RlimitNoFile, s.RlimitNProc = idle.Pids, idle.Limits.NoFile, idle.Limits.NProc
			s.Idle = &ServerSample{Pss: idle.Pss, PssAnon: idle.PssAnon, Threads: idle.Threads, FDs: idle.FDs}
			return
		}
		peak = idle
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
