package runner

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// Restored is what Restore did: the sysctls, and what else it removed.
type Restored struct {
	Changes []sysctl.Change
	Removed []string // the cgroup, the swapfile: each as "what path"
}

// Restore undoes what a run directory records that its run left behind,
// for a run that was killed before it could: the server it started (which
// may be in its memory cgroup), then every change its list names, newest
// first (host.RestoreAll), the TIME_WAIT sockets its workers left, and
// last the sysctls.
func Restore(dir string) (Restored, error) {
	var r Restored
	var errs []error
	for _, undo := range []host.Restorer{awaitKilledRunWorkers, stopKilledRunServer, restoreChanges(&r), freeKilledRunTimeWait} {
		what, err := undo(dir)
		if what != "" {
			r.Removed = append(r.Removed, what)
		}
		errs = append(errs, err)
	}
	// --netns's host value, restored with the changes, listed first.
	if nj, err := sysctl.LoadJournal(filepath.Join(dir, rundir.NetnsJournal)); err == nil {
		r.Changes = nj.Changes()
	}
	j, err := sysctl.LoadJournal(filepath.Join(dir, rundir.Journal))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return r, errors.Join(append(errs, fmt.Errorf("%s: no such run directory", dir))...)
		}
		// A run that changed no sysctl (a dialer's, a --netns run killed
		// before its namespace's run began) has no journal: nothing there.
		return r, errors.Join(errs...)
	}
	if err != nil {
		return r, errors.Join(append(errs, err)...)
	}
	errs = append(errs, j.Restore())
	r.Changes = append(r.Changes, j.Changes()...)
	return r, errors.Join(errs...)
}

// awaitKilledRunWorkers waits, up to a minute, for the processes a killed
// run's workers.pids lists to end: PR_SET_PDEATHSIG killed them with it,
// but a worker ends only once the kernel has freed its sockets, and under
// TCG client workers of a run killed while swapping were still exiting
// after restore had swapped off (Debian's 6.12, VM tier, 2026-12-07).
func awaitKilledRunWorkers(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, rundir.Workers))
	if err != nil {
		return "", nil
	}
	deadline := time.Now().Add(time.Minute)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		for pid > 0 && ours(pid) {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("the killed run's %s (pid %d) has not ended after a minute", strings.Join(f[1:], " "), pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "", nil
}

// ours says whether pid is a live process (not a zombie) of this tool's:
// a worker, the ballast or the keeper, by its command name.
func ours(pid int) bool {
	st, err := procfs.ReadStat(pid)
	if err != nil || st.State == 'Z' {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("%s/%d/comm", procfs.Root, pid))
	return err == nil && strings.HasPrefix(string(comm), "c10mprobe")
}

// restoreChanges is host.RestoreAll as one restorer, its removals in r.
func restoreChanges(r *Restored) host.Restorer {
	return func(dir string) (string, error) {
		removed, err := host.RestoreAll(dir)
		r.Removed = append(r.Removed, removed...)
		return "", err
	}
}

// cleanup ends every worker and closes the listener, then undoes the
// host changes the run made; it runs on every exit.
func (r *Runner) cleanup() {
	r.mu.Lock()
	aborted := r.aborted
	r.mu.Unlock()
	died := r.anyDied() || aborted
	r.stopWorkers()
	r.stopServer()
	r.removeTimeWait(died)
	if r.listener != nil {
		r.listener.Close()
		r.listener = nil
	}
	for _, err := range host.UndoAll(r.applied) {
		fmt.Fprintf(r.cfg.Log, "warning: %v; c10mprobe restore %s removes it\n", err, r.cfg.OutDir)
	}
	r.applied = nil
}

// Leftovers lists what the run directory dir records as still changed on
// the host: the sysctls its journal has not restored, and the cgroup,
// swapfile or tracefs mount it names. A finished or restored run has none.
func Leftovers(dir string) []string {
	var out []string
	for _, name := range []string{rundir.NetnsJournal, rundir.Journal} {
		if j, err := sysctl.LoadJournal(filepath.Join(dir, name)); err == nil {
			for _, c := range j.Changes() {
				if !c.Restored {
					out = append(out, fmt.Sprintf("%s = %s", c.Key, c.New))
				}
			}
		}
	}
	for _, f := range []string{rundir.Memcg, rundir.Swap, rundir.Tracefs} {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			out = append(out, strings.TrimSpace(strings.Split(string(data), "\n")[0]))
		}
	}
	if pgid, alive, _ := killedRunServer(dir); alive {
		out = append(out, fmt.Sprintf("the server's process group %d (--server-cmd)", pgid))
	}
	return out
}

// removeTimeWait frees the run's TIME_WAIT sockets, as ss -K would. The
// runner closes quietly or with an RST, which leaves none; a worker that
// died had its sockets closed by the kernel with a FIN, and each would hold
// its port for 60 s after the run.
func (r *Runner) removeTimeWait(died bool) {
	tw := r.timeWait()
	if !tw.server.IsValid() {
		return
	}
	freed := tw.free()
	// After a death, the last FINs of the dead worker's connections cross
	// as the others exit: sockets still reach TIME_WAIT for a while after.
	for i := 0; died && i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		n := tw.free()
		freed += n
		if n == 0 && i >= 3 {
			break
		}
	}
	if freed > 0 {
		fmt.Fprintf(r.cfg.Log, "freed %d of the run's sockets in TIME_WAIT or FIN_WAIT2 (a worker's, closed by the kernel when it died)\n", freed)
	}
}

// timeWaitScope is which TIME_WAIT sockets are a run's: those at either
// end of its built-in server, or, with a server the user brought, only its
// own client ends (the server's, and its other clients', are theirs).
type timeWaitScope struct {
	server  netip.AddrPort
	clients map[netip.Addr]bool // nil: both ends
}

// timeWait is this run's scope; none for serve and dial, whose other ends
// are on other hosts.
func (r *Runner) timeWait() timeWaitScope {
	if r.cfg.Mode != ModeRun {
		return timeWaitScope{}
	}
	tw := timeWaitScope{server: r.connectTo}
	if r.cfg.External() {
		tw.clients = map[netip.Addr]bool{}
		for _, a := range r.plan.Sources {
			tw.clients[a] = true
		}
	}
	return tw
}

// String is the scope as rundir.Server records it: the server, then for a
// brought one each client address.
func (tw timeWaitScope) String() string {
	var b strings.Builder
	b.WriteString(tw.server.String() + "\n")
	for a := range tw.clients {
		b.WriteString("client " + a.String() + "\n")
	}
	return b.String()
}

func parseTimeWaitScope(data string) (timeWaitScope, error) {
	lines := strings.Split(strings.TrimSpace(data), "\n")
	server, err := netip.ParseAddrPort(strings.TrimSpace(lines[0]))
	if err != nil {
		return timeWaitScope{}, fmt.Errorf("%s: %w", rundir.Server, err)
	}
	tw := timeWaitScope{server: server}
	for _, l := range lines[1:] {
		a, err := netip.ParseAddr(strings.TrimSpace(strings.TrimPrefix(l, "client ")))
		if err != nil {
			return timeWaitScope{}, fmt.Errorf("%s: %w", rundir.Server, err)
		}
		if tw.clients == nil {
			tw.clients = map[netip.Addr]bool{}
		}
		tw.clients[a] = true
	}
	return tw, nil
}

// free destroys the scope's TIME_WAIT sockets and says how many.
func (tw timeWaitScope) free() int {
	var found []sockdiag.Socket
	// A dead worker's sockets, closed by the kernel with a FIN while the
	// peer still held them, wait in FIN_WAIT2 as timewait sockets for
	// tcp_fin_timeout (60 s); the dump matches those by their substate
	// (inet_diag_dump_icsk), so both states are asked for.
	states := uint32(1<<sockdiag.StateTimeWait | 1<<sockdiag.StateFinWait2)
	collect := func(s *sockdiag.Socket) {
		ours := s.Remote == tw.server || s.Local == tw.server
		if tw.clients != nil {
			ours = s.Remote == tw.server && tw.clients[s.Local.Addr()]
		}
		if ours {
			found = append(found, *s)
		}
	}
	dump := sockdiag.DumpIPv4
	if tw.server.Addr().Is6() {
		dump = sockdiag.DumpIPv6
	}
	if dump(states, collect) != nil {
		return 0
	}
	freed := 0
	for i := range found {
		if sockdiag.Destroy(&found[i]) == nil {
			freed++
		}
	}
	return freed
}

// freeKilledRunTimeWait frees what a killed run's workers left in TIME_WAIT
// on its server port, and says what it did.
func freeKilledRunTimeWait(dir string) (string, error) {
	data, ok, err := host.ReadRecord(dir, rundir.Server)
	if !ok || err != nil {
		return "", err
	}
	tw, err := parseTimeWaitScope(data)
	if err != nil {
		return "", err
	}
	if n := tw.free(); n > 0 {
		return fmt.Sprintf("%d sockets in TIME_WAIT on %s (its workers', closed by the kernel when it was killed)", n, tw.server), nil
	}
	return "", nil
}

// KilledRuns names the runs in parent that were killed and left the host
// changed, each with what it left and the command that puts it back: a run
// beside them would measure, and later restore, a host that is not as its
// owner left it.
func KilledRuns(parent string) []string {
	var notes []string
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || host.Running(dir) {
			continue // a live run, perhaps in another network namespace
		}
		if left := Leftovers(dir); len(left) > 0 {
			notes = append(notes, fmt.Sprintf("the run in %s was killed and left the host changed (%s): sudo c10mprobe restore %s",
				dir, strings.Join(left, "; "), dir))
		}
	}
	return notes
}

// Unrestored is the first run killed before it put the host back (its
// process gone, its marker left) that left the host changed, and what it
// left; a killed run that left nothing is forgotten.
func Unrestored() (dir string, left []string) {
	for _, d := range host.Killed() {
		if left := Leftovers(d); len(left) > 0 {
			return d, left
		}
		host.Unmark(d)
	}
	return "", nil
}
