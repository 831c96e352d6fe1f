package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/memmodel"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/c10mprobe/c10mprobe/runner/worker"
	"golang.org/x/sys/unix"
)

// proc is one worker process as the parent sees it.
type proc struct {
	role   Role
	index  int
	quota  int
	cmd    *exec.Cmd
	ctl    *os.File
	pid    int
	exited chan struct{}

	// guarded by Runner.mu
	stats      worker.Stats
	reports    uint64
	state      *os.ProcessState
	expectExit bool
}

// WorkerBinary is the lean worker executable, looked for beside this one.
const WorkerBinary = "c10mprobe-worker"

// workerExe is the worker executable: c10mprobe-worker beside this binary
// when there is one (make build puts it there), else this binary itself.
// The lean one saves each worker the package init of everything it never
// runs (google/pprof/profile alone allocates 154 KB compiling regexps).
func workerExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding own executable: %w", err)
	}
	lean := filepath.Join(filepath.Dir(exe), WorkerBinary)
	if st, err := os.Stat(lean); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return lean, nil
	}
	return exe, nil
}

func (r *Runner) spawn() error {
	exe, err := workerExe()
	if err != nil {
		return err
	}
	r.workerExe = exe
	sources := make([]string, len(r.plan.Sources))
	for i, s := range r.plan.Sources {
		sources[i] = s.String()
	}
	if r.cfg.OnSpawn != nil {
		if err := r.cfg.OnSpawn(os.Getpid()); err != nil {
			return err
		}
	}
	window := r.exchangeWindow()
	for i := range r.plan.ServerWorkers {
		wc := worker.Config{Proto: worker.ProtoVersion, Role: Server, Index: i, Quota: Quota(r.cfg.Conns, r.plan.ServerWorkers, i),
			Base: uint32(i * r.plan.ConnsPerWorker), NoFile: r.plan.NoFile, Payload: r.cfg.Payload, Unread: r.cfg.Unread,
			Stream: r.cfg.Mode == ModeServe, QuietClose: r.quietClose(), LockMemory: r.cfg.MachineMem > 0, Window: window}
		if r.cfg.Mode != ModeServe {
			// A worker may take more than its share of what the run's own
			// clients open, which are exactly --conns. serve's dialers may
			// bring more: there equal shares cap the total, and a worker
			// that fills has the others woken for the queue (CmdAccept).
			wc.Quota = max(wc.Quota, min(r.plan.ConnsPerWorker, r.cfg.Conns))
		}
		if err := r.start(exe, wc, r.listener); err != nil {
			return err
		}
	}
	perWorkerRate := r.cfg.Rate / float64(r.plan.ClientWorkers)
	base := 0
	for i := range r.plan.ClientWorkers {
		wc := worker.Config{Proto: worker.ProtoVersion, Role: Client, Index: i, Quota: Quota(r.cfg.Conns, r.plan.ClientWorkers, i),
			NoFile: r.plan.NoFile, Sources: sources, Server: r.connectTo.String(), Base: uint32(base), Exchange: r.cfg.Exchange, Family: r.cfg.Family,
			Inflight: max(1, r.cfg.Inflight/r.plan.ClientWorkers), Rate: perWorkerRate, Payload: r.cfg.Payload, Unread: r.cfg.Unread,
			LockMemory: r.cfg.MachineMem > 0, Window: window}
		base += wc.Quota
		wc.QuietClose = r.quietClose()
		wc.PeerCloseFails = r.cfg.Exchange == ExchangeNone && r.cfg.Mode == ModeRun
		if r.censusAt > 0 {
			wc.Census = Quota(r.censusAt, r.plan.ClientWorkers, i)
		}
		if r.plan.RunnerPorts {
			wc.Ports = [2]int{r.plan.PortLo, r.plan.PortLo + r.plan.PortsPerSource - 1}
			wc.Stride = r.plan.ClientWorkers
		}
		if err := r.start(exe, wc, nil); err != nil {
			return err
		}
	}
	var pids bytes.Buffer
	for _, p := range r.procs {
		fmt.Fprintf(&pids, "%d %s %d\n", p.pid, p.role, p.index)
	}
	if r.ballast != nil {
		fmt.Fprintf(&pids, "%d %s 0\n", r.ballast.pid, Ballast)
	}
	if r.machine != nil && r.machine.KeeperPid() > 0 {
		fmt.Fprintf(&pids, "%d %s 0\n", r.machine.KeeperPid(), host.KeeperRole)
	}
	// What restore frees of a killed run's TIME_WAIT (timeWaitScope).
	if tw := r.timeWait(); tw.server.IsValid() {
		if err := os.WriteFile(filepath.Join(r.cfg.OutDir, rundir.Server), []byte(tw.String()), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(r.cfg.OutDir, rundir.Workers), pids.Bytes(), 0o644)
}

func (r *Runner) start(exe string, wc worker.Config, listener *os.File) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	// Non-blocking on our side so that the Go runtime's poller reads it.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	ctl := os.NewFile(uintptr(fds[0]), "ctl")
	child := os.NewFile(uintptr(fds[1]), "ctl-child")
	defer child.Close()
	cfgJSON, err := json.Marshal(wc)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, worker.Arg)
	cmd.Stdin = bytes.NewReader(cfgJSON)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{child}
	if listener != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, listener)
	}
	// One thread does the work; a small GOMAXPROCS keeps the runtime's
	// per-P caches, and so each worker's baseline memory, small.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL, // the worker dies with the parent, even a SIGKILLed one
		Setpgid:   true,            // and a terminal's SIGINT goes to the parent alone
	}
	// An abort (a second signal) kills what is in r.procs: a worker it
	// could not see would live on until Run's cleanup.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aborted {
		ctl.Close()
		return fmt.Errorf("starting %s worker %d: the run was aborted", wc.Role, wc.Index)
	}
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return fmt.Errorf("starting %s worker %d: %w", wc.Role, wc.Index, err)
	}
	p := &proc{role: wc.Role, index: wc.Index, quota: wc.Quota, cmd: cmd, ctl: ctl, pid: cmd.Process.Pid, exited: make(chan struct{})}
	r.procs = append(r.procs, p)
	// Workers open nothing before worker.CmdConnect, so this is in time.
	if r.memcap != nil {
		if err := r.memcap.Add(p.pid); err != nil {
			return err
		}
	}
	if r.cfg.OnSpawn != nil {
		if err := r.cfg.OnSpawn(p.pid); err != nil {
			return err
		}
	}
	go r.readStats(p)
	go func() {
		_ = cmd.Wait()
		r.mu.Lock()
		p.state = cmd.ProcessState
		if !p.expectExit {
			r.recordDeath(p)
			r.setLimit(limit.WorkerDied, r.deathDetail(p))
		}
		r.mu.Unlock()
		close(p.exited)
		r.poke()
	}()
	return nil
}

// deathDetail is the limit's detail for a worker's death. r.mu is held.
func (r *Runner) deathDetail(p *proc) string {
	for _, d := range r.deaths {
		if d.PID == p.pid {
			how := d.How
			if d.OOMKill {
				how += fmt.Sprintf(" (the OOM killer: %d kills since the run started, see dmesg)", d.OOMKills)
			}
			return fmt.Sprintf("%s %s %s; the run ended there", d.Worker(), how, d.When())
		}
	}
	return fmt.Sprintf("%s worker %d (pid %d) %s; the run ended there", p.role, p.index, p.pid, p.state)
}

func (r *Runner) readStats(p *proc) {
	buf := make([]byte, worker.StatsSize+64)
	for {
		n, err := p.ctl.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var s worker.Stats
		if s.Unmarshal(buf[:n]) != nil {
			continue
		}
		r.mu.Lock()
		// A server worker that stopped listening may leave connections
		// queued that no other was woken for (CmdAccept).
		handOff := p.role == Server && p.stats.ConnectDone == 0 && s.ConnectDone != 0
		p.stats = s
		p.reports++
		if s.FirstFail != 0 && r.limit == nil {
			r.setLimit(r.limitFor(p, &s))
		}
		r.mu.Unlock()
		if handOff {
			r.send(Server, worker.CmdAccept)
		}
		r.poke()
	}
}

func (r *Runner) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// send writes c to every worker of role, or to all when role is "".
func (r *Runner) send(role Role, c worker.Command) {
	for _, p := range r.workers() {
		if role == "" || p.role == role {
			_, _ = p.ctl.Write([]byte{byte(c)})
		}
	}
}

// workers is a copy of the worker list, safe to range over while start may
// append to it.
func (r *Runner) workers() []*proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*proc(nil), r.procs...)
}

// sync sends c to every live worker and waits for each to report back.
func (r *Runner) sync(c worker.Command) {
	r.mu.Lock()
	seen := make(map[*proc]uint64, len(r.procs))
	for _, p := range r.procs {
		seen[p] = p.reports
	}
	r.mu.Unlock()
	r.send("", c)
	deadline := time.After(r.cfg.Timeout)
	for {
		r.mu.Lock()
		all := true
		for _, p := range r.procs {
			if p.state == nil && p.reports == seen[p] {
				all = false
			}
		}
		r.mu.Unlock()
		if all {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// totals sums what every worker last reported.
type totals struct {
	payloadSent, payloadRead                          uint64
	clientOpened, clientEstablished, received, echoed uint64
	accepted, sent, verified, closed                  uint64
	clientClosed, peerClosed, portsSkipped            uint64
	dialerClosed                                      uint64 // serve: connections its dialers closed
	failed                                            [worker.NumFailKinds]uint64
	connectDone, exchangeDone, closeDone              bool
	censusDone                                        bool // every client paused at its census share, done opening, or dead
	acceptDone                                        bool // every server worker stopped accepting
	clientExchangeDone                                bool // every client through its connections' exchange
	closeNanos                                        int64
}

func (r *Runner) totals() totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.totalsLocked()
}

func (r *Runner) totalsLocked() totals {
	t := totals{connectDone: true, exchangeDone: true, closeDone: true, acceptDone: true, clientExchangeDone: true, censusDone: true}
	for _, p := range r.procs {
		s := &p.stats
		dead := p.state != nil
		for k, v := range s.Failed {
			t.failed[k] += v
		}
		t.closed += s.Closed
		t.payloadSent += s.PayloadSent
		t.payloadRead += s.PayloadRead
		t.closeNanos = max(t.closeNanos, s.CloseNanos)
		t.closeDone = t.closeDone && (s.CloseDone != 0 || dead)
		if p.role == Client && r.cfg.clientOnly() {
			// The client end is the only one the run has: what the
			// server accepted is not reported (sock_diag counts it).
			t.accepted += s.Established
			t.verified += s.Verified
			t.exchangeDone = t.exchangeDone && (s.ExchangeDone != 0 || dead)
		}
		if p.role == Client {
			t.clientOpened += s.Opened
			t.clientEstablished += s.Established
			t.clientClosed += s.Closed
			t.peerClosed += s.PeerClosed
			t.portsSkipped += s.PortsSkipped
			t.received += s.Verified
			t.echoed += s.Sent
			t.connectDone = t.connectDone && (s.ConnectDone != 0 || dead)
			t.censusDone = t.censusDone && (s.CensusDone != 0 || s.ConnectDone != 0 || dead)
			t.clientExchangeDone = t.clientExchangeDone && (s.ExchangeDone != 0 || dead)
		} else {
			t.accepted += s.Established
			t.sent += s.Sent
			t.verified += s.Verified
			t.dialerClosed += s.PeerClosed
			t.exchangeDone = t.exchangeDone && (s.ExchangeDone != 0 || dead)
			t.acceptDone = t.acceptDone && (s.ConnectDone != 0 || dead)
		}
	}
	return t
}

func (r *Runner) anyDied() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		if p.state != nil && !p.expectExit {
			return true
		}
	}
	return false
}

// exitGrace is how long workers get to exit when told to.
const exitGrace = 5 * time.Second

// stopWorkers tells every worker to exit and reaps it; every worker that
// has not exited by one deadline is killed then, however many hang.
func (r *Runner) stopWorkers() {
	r.mu.Lock()
	for _, p := range r.procs {
		p.expectExit = true
	}
	r.mu.Unlock()
	r.send("", worker.CmdExit)
	deadline := time.NewTimer(exitGrace)
	defer deadline.Stop()
	procs := r.workers()
	for _, p := range procs {
		select {
		case <-p.exited:
			continue
		case <-deadline.C:
		}
		for _, q := range procs {
			// Through os.Process (a pidfd): never a reaped pid reused since.
			_ = q.cmd.Process.Kill()
		}
		break
	}
	for _, p := range procs {
		<-p.exited
		p.ctl.Close()
	}
}

// quietClose: both ends of every connection are this run's workers, so
// they may close without telling each other (worker.Config.QuietClose).
func (r *Runner) quietClose() bool { return r.cfg.Mode == ModeRun && !r.cfg.External() }

// exchangeWindow is each worker's exchange window on a smaller machine
// (0, the worker's own, elsewhere): what the exchange holds in flight
// there comes out of the margin the guard stopped with. On Debian's 6.1
// under TCG every unanswered message held ≈ 8.6 KiB (kmalloc-1k skb heads
// and skbuff_head_cache: its data, the echo and their ACKs, queued behind
// a slow softirq): 6 server workers' 4,096 each took 211 MiB within 15 s
// of a stop at 176,535 (2026-12-07), and the OOM killer came. Half the
// guard's fixed margin for all of them: 341 a worker (a quarter) kept
// kmalloc-1k flat there, but verified 1.1k a second where 4,096 had 3k.
func (r *Runner) exchangeWindow() int {
	if r.cfg.MachineMem == 0 {
		return 0
	}
	const perMessage = 8 << 10
	workers := max(1, r.plan.ServerWorkers, r.plan.ClientWorkers)
	return max(64, int(memmodel.RunEnds.MarginFixed/2/perMessage)/workers)
}

// Subprocess runs this executable as one of the run's own processes when
// args (os.Args) ask for one: a worker or the ballast (worker.Arg), or a
// smaller machine's keeper (host.KeeperArg). ok is false for the CLI.
func Subprocess(args []string) (code int, ok bool) {
	switch {
	case len(args) > 1 && args[1] == worker.Arg:
		return worker.Main(), true
	case len(args) > 2 && args[1] == host.KeeperArg:
		return host.KeepMachine(args[2]), true
	}
	return 0, false
}
