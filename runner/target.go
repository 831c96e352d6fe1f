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

	"github.com/c10mprobe/c10mprobe/internal/phase"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
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
	// exited is the --server-cmd's own exit, before the run stopped it:
	// its status and the run's phase then (nil while it runs, or when
	// the run stopped it).
	exited   *ServerExit
	stopping bool
}

// ServerExit is a --server-cmd that exited while the run still needed it.
type ServerExit struct {
	Status       string      `json:"status"` // "exit status 3", "signal: killed"
	Phase        phase.Phase `json:"phase"`
	AfterSeconds float64     `json:"after_seconds"` // since the run started its workers
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
	go func() {
		_ = cmd.Wait()
		r.mu.Lock()
		if !t.stopping {
			t.exited = &ServerExit{Status: cmd.ProcessState.String(), Phase: r.phaseNow}
			if !r.began.IsZero() {
				t.exited.AfterSeconds = time.Since(r.began).Seconds()
			}
		}
		r.mu.Unlock()
		close(t.done)
		r.poke()
	}()
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
	r.mu.Lock()
	t.stopping = true
	r.mu.Unlock()
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

// serverExit is how a --server-cmd ended while the run needed it; nil
// while it runs. r.mu is held.
func (r *Runner) serverExit() *ServerExit {
	if r.target == nil {
		return nil
	}
	return r.target.exited
}
