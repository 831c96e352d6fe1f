package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/c10mprobe/c10mprobe/runner/worker"
	"golang.org/x/sys/unix"
)

// Runner holds one run: its plan, its workers and what it changed on the host.
type Runner struct {
	cfg     Config
	host    Host
	plan    Plan
	tuning  Tuning
	sysctls []KeyValue // set for the run: --port-range, then --sysctl
	journal *sysctl.Journal
	// connectTo is where clients connect: --listen, or 127.0.0.1 on its
	// port when --listen is the wildcard. A connect to 0.0.0.0 would reach
	// the client's own source address (ip_route_output_key_hash_rcu: an
	// unspecified destination becomes the source), a different server
	// address for every source.
	connectTo netip.AddrPort
	workerExe string // what spawn started

	// listener is the server socket, owned by this one os.File: a second
	// wrapper's finalizer would close the fd number again after it was reused.
	listener *os.File
	target   *target // --target; nil for the built-in server
	// What the target's processes held with the workers idle, and at the peak.
	serverIdle, serverPeak *serverState
	// heldVerified is what --exchange none verified with sock_diag.
	heldVerified *uint64
	total        int          // dial: connections over all dialers; Conns is this one's share
	memcap       *host.Memcap // --mem-limit; nil without
	// changes are what the run changed on the host, in the order applied:
	// cleanup undoes them in reverse.
	changes []host.Change
	ballast *ballast // --ballast; nil without
	machine *machine // --machine-mem; nil without
	vmStart map[string]uint64
	notify  chan struct{}

	oomKillsAtStart uint64
	pressure        pressure // PSI over the run's own last seconds

	mu         sync.Mutex
	procs      []*proc
	limit      *Limit  // the first limit that bound
	held       *uint64 // held at both ends after a worker died (sock_diag)
	heldAtPeak *uint64 // the same, when the worker died before the peak
	stopping   bool
	aborted    bool
	guarded    bool // a guard tripped after the connect phase
	// The census (--kmem census, SetCensus): where, what to call, when
	// every client paused, and done.
	censusAt     int
	onCensus     func(connections uint64) error
	censusPaused time.Time
	censusPause  time.Duration // from the last client pausing to the resume
	censused     bool
}

// Host returns what Prepare read.
func (r *Runner) Host() Host { return r.host }

// Plan returns the plan.
func (r *Runner) Plan() Plan { return r.plan }

// Conns is how many connections this run opens: --conns, or a dialer's
// share of it (--index, --of), as Prepare resolved it.
func (r *Runner) Conns() int { return r.cfg.Conns }

// Preflight returns the limits table.
func (r *Runner) Preflight() []Check {
	return append(Preflight(r.host, r.plan, r.tuning, r.cfg.Reserve, r.cfg.NoTune), r.ServerChecks()...)
}

// Abort kills every worker now; Run then restores and returns. For a second SIGINT.
func (r *Runner) Abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aborted {
		return
	}
	r.aborted = true
	r.setLimit(limit.Interrupted, "aborted by a second signal")
	for _, p := range r.procs {
		_ = p.cmd.Process.Kill()
	}
}

// Run does the run. The host is restored on every path out of it.
func (r *Runner) Run(ctx context.Context) (res *Result, err error) {
	start := time.Now()
	res = &Result{
		Requested: r.cfg.Conns, Server: ServerResult{Addr: r.serverAddr().Addr().String(), Port: int(r.serverAddr().Port()),
			External: r.cfg.External(), Exchange: string(r.cfg.Exchange), Cmd: r.cfg.ServerCmd},
		SourceAddresses: len(r.plan.Sources), Plan: r.plan, Failed: map[string]uint64{},
		SourcePorts: SourcePorts{Range: fmt.Sprintf("%d-%d", r.tuning.PortLo, r.tuning.PortHi), HeldByOthers: r.plan.PortsHeld,
			FreePerAddress: r.plan.PortsFree, Addresses: len(r.plan.Sources), ChosenBy: string(r.cfg.PortChoice)},
		Workers: WorkerCounts{Client: r.plan.ClientWorkers, Server: r.plan.ServerWorkers}, Settings: r.settings(),
	}
	if err := os.MkdirAll(r.cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	r.journal = sysctl.NewJournal(filepath.Join(r.cfg.OutDir, rundir.Journal))
	defer func() {
		r.cleanup()
		if rerr := r.journal.Restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring sysctls: %w", rerr))
		}
		res.SysctlChanges = r.journal.Changes()
		res.WallSeconds = time.Since(start).Seconds()
	}()

	if vm, err := procfs.ReadVmstat(); err == nil {
		r.oomKillsAtStart = vm["oom_kill"]
	}
	if err := r.tune(); err != nil {
		return res, err
	}
	if r.cfg.MachineMem > 0 {
		if err := r.shrink(); err != nil {
			return res, err
		}
	}
	var changes []host.Change
	if r.memcap != nil {
		changes = append(changes, r.memcap)
	}
	swap := &host.Swap{Dir: r.cfg.OutDir, Size: r.cfg.Swap}
	if r.cfg.Swap > 0 {
		changes = append(changes, swap)
	}
	r.changes, err = host.ApplyAll(changes)
	if r.memcap != nil {
		res.Memcap = r.memcap.Result
	}
	if err != nil {
		return res, err
	}
	if r.cfg.Swap > 0 {
		res.Swap = &SwapResult{Bytes: r.cfg.Swap, Path: swap.Path}
		fmt.Fprintf(r.cfg.Log, "swap: %s of swapfile at %s for the run\n", units.Bytes(r.cfg.Swap), swap.Path)
	}
	if r.cfg.Ballast > 0 {
		exe, err := workerExe()
		if err != nil {
			return res, err
		}
		if err := r.startBallast(exe); err != nil {
			return res, err
		}
	}
	r.vmStart, _ = procfs.ReadVmstat()
	before, err := procfs.ReadListenCounters()
	if err != nil {
		return res, fmt.Errorf("reading listen counters: %w", err)
	}
	if r.cfg.External() {
		if err := r.startServer(); err != nil {
			return res, err
		}
	} else if !r.cfg.clientOnly() {
		if err := r.listen(); err != nil {
			return res, err
		}
	}
	if err := r.spawn(); err != nil {
		return res, err
	}
	if r.cfg.External() {
		if err := r.sampleServer(&r.serverIdle); err != nil {
			return res, err
		}
		if r.cfg.ServerCmd != "" && r.cfg.OnServerUp != nil {
			r.cfg.OnServerUp(r.ServerChecks())
		}
	}
	if r.memcap != nil {
		r.memcap.Predict()
	}
	if r.machine != nil {
		r.predictMachine()
	}
	if err := r.phaseDone(PhaseIdle); err != nil {
		return res, err
	}

	if r.cfg.Mode == ModeServe {
		r.serve(ctx, res)
	} else {
		r.connect(ctx, res)
	}
	if err := r.phaseDone(PhaseConnect); err != nil {
		return res, err
	}
	r.exchange(ctx, res)
	if r.cfg.Exchange == ExchangeNone {
		r.settleAccepts()
	}
	// The peak: everything the run will hold is held now. The runner's own
	// memory is read before any observer (probes, sock_diag) grows the parent.
	res.RunnerPss, res.RunnerPssByRole.Client, res.RunnerPssByRole.Server, res.RunnerPssByRole.Parent = r.pss()
	if r.cfg.External() {
		if err := r.sampleServer(&r.serverPeak); err != nil {
			fmt.Fprintf(r.cfg.Log, "warning: %v\n", err)
		}
	}
	if res.Swap != nil {
		if m, err := procfs.ReadMeminfo(); err == nil {
			res.Swap.PeakUsed = m.SwapTotal - m.SwapFree
		}
	}
	res.MaxSocketsPerWorker, res.WorkerOwnFDs = r.maxPerWorker()
	res.ConntrackPeak, _ = procfs.ReadInt("/proc/sys/net/netfilter/nf_conntrack_count")
	if r.ballast != nil {
		res.Ballast = r.ballast.result()
	}
	if err := r.phaseDone(PhaseExchange); err != nil {
		return res, err
	}
	if err := r.countEndpoints(res); err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: counting client endpoints with sock_diag: %v\n", err)
	}
	r.recountAfterDeath(true)
	// A dialer holds until its server closes, --hold at most.
	if (r.cfg.Hold > 0 || r.cfg.Mode == ModeDial) && ctx.Err() == nil && !r.anyDied() && !r.guarded {
		r.hold(ctx, res)
		r.recountAfterDeath(false)
		if err := r.phaseDone(PhaseHold); err != nil {
			return res, err
		}
	}
	if r.cfg.Exchange == ExchangeNone {
		r.verifyHeld()
	}
	if ctx.Err() != nil {
		r.mu.Lock()
		r.setLimit(limit.Interrupted, "interrupted by a signal")
		r.mu.Unlock()
	}

	r.close(res)
	if err := r.phaseDone(PhaseClose); err != nil {
		return res, err
	}
	after, err := procfs.ReadListenCounters()
	if err == nil {
		res.ListenOverflows = after.Overflows - before.Overflows
		res.ListenDrops = after.Drops - before.Drops
	}
	r.finishResult(res)
	return res, nil
}

// settings records what the run was asked to do that changes its result.
func (r *Runner) settings() Settings {
	c := r.cfg
	s := Settings{Rate: c.Rate, Inflight: c.Inflight, NoTune: c.NoTune, MemLimit: c.MemLimit, Swap: c.Swap,
		WorkerFDs: c.WorkerFDs, MaxWorkers: c.MaxWorkers, PortRange: c.PortRange, Sysctls: c.Sysctls,
		Payload: c.Payload, Unread: c.Unread, HoldSeconds: c.Hold.Seconds(), ReserveBytes: c.Reserve,
		Exchange: string(c.Exchange), Family: string(c.Family), PortChoice: string(c.PortChoice), Netns: c.InNetns}
	if c.clientOnly() {
		s.Target = c.Target.String()
	}
	for _, a := range c.Sources {
		s.Sources = append(s.Sources, a.String())
	}
	return s
}

// memoryPressureStop is the PSI "full" share at which a run stops opening: a
// tenth of the time with every task stalled on memory is a host in trouble.
const memoryPressureStop = 10.0

// guard says which of the host's guards has tripped, if any: spare memory
// below --reserve, or PSI saying every task is stalled on memory.
func (r *Runner) guard() (limit.Kind, string) {
	if r.machine != nil {
		return r.machineGuard()
	}
	if m, err := procfs.ReadMeminfo(); err == nil && m.Spare() < r.cfg.Reserve {
		return limit.MemoryReserve, fmt.Sprintf("spare memory (free + page cache; MemAvailable %s also counts the sockets' pinned dentries and inodes) fell to %s, below the reserve of %s (--reserve): the host is guarded before it runs out",
			units.Bytes(m.MemAvailable), units.Bytes(m.Spare()), units.Bytes(r.cfg.Reserve))
	}
	if full, ok := r.pressure.share(); ok && full >= memoryPressureStop {
		return limit.MemoryPressure, fmt.Sprintf("every task waited for memory %.0f %% of the last %s (PSI full): the kernel is reclaiming; stopped before it stalls the host", full, pressureWindow)
	}
	return "", ""
}

func (r *Runner) tune() error {
	set := func(key, value string) error {
		c, err := r.journal.Set(key, value)
		if err != nil {
			return err
		}
		if c.Old != c.New {
			fmt.Fprintf(r.cfg.Log, "sysctl %s: %s → %s (restored at exit)\n", c.Key, c.Old, c.New)
		}
		return nil
	}
	// The backlog is raised unless the run sets it itself.
	mine := map[string]bool{}
	for _, kv := range r.sysctls {
		mine[kv.Key] = true
	}
	// A dialer listens on nothing.
	if !r.cfg.NoTune && r.cfg.Mode != ModeDial {
		want := fmt.Sprint(r.tuning.Backlog)
		if r.host.Somaxconn < r.tuning.Backlog && !mine["net.core.somaxconn"] {
			if err := set("net.core.somaxconn", want); err != nil {
				return err
			}
		}
		if r.host.SynBacklog < r.tuning.Backlog && !mine["net.ipv4.tcp_max_syn_backlog"] {
			if err := set("net.ipv4.tcp_max_syn_backlog", want); err != nil {
				return err
			}
		}
	}
	for _, kv := range r.sysctls {
		if err := set(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	return nil
}

// listen opens the one server socket. Every server worker inherits it and
// accepts from its single queue, so no connection can be stranded behind a
// worker that is full (an SO_REUSEPORT group hashes connections to a listener
// whether or not its owner has fds left). A full worker just stops watching it.
func (r *Runner) listen() error {
	// Non-blocking for the workers (the flag is on the shared file
	// description); close-on-exec for any other child, as ExtraFiles dup it.
	fd, err := unix.Socket(r.cfg.Family.Domain(), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	r.listener = os.NewFile(uintptr(fd), "listener")
	if r.cfg.Family == FamilyInet6 {
		// IPv4-mapped addresses need a dual-stack socket (the default, unless
		// net.ipv6.bindv6only says otherwise).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return os.NewSyscallError("setsockopt(IPV6_V6ONLY)", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt(SO_REUSEADDR)", err)
	}
	sa := r.cfg.Family.Sockaddr(r.cfg.Listen.Addr(), r.cfg.Listen.Port())
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("listening on %s: %w", r.cfg.Listen, err)
	}
	if err := unix.Listen(fd, int(r.tuning.Backlog)); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
}

// waitFor waits until done() holds, calling tick about every 100 ms. It gives
// up when the workers' counts stop moving for stallAfter(), asked each time.
func (r *Runner) waitFor(done func(totals) bool, tick func(totals), stallAfter func() time.Duration) (stalled bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastMove, last := time.Now(), totals{}
	for {
		cur := r.totals()
		if done(cur) {
			return false
		}
		if cur != last {
			lastMove, last = time.Now(), cur
		} else if time.Since(lastMove) > stallAfter() {
			return true
		}
		select {
		case <-r.notify:
		case <-t.C:
			if tick != nil {
				tick(cur)
			}
		}
	}
}

// SetCensus pauses opening once at connections are open and settled, calls
// fn, and goes on: the probes count the slab exactly up to there (--kmem
// census). Set before Run.
func (r *Runner) SetCensus(at int, fn func(connections uint64) error) {
	r.censusAt, r.onCensus = at, fn
}

// census takes the census (--kmem census) once every client has paused at
// its share and the server has accepted what they opened (2 s at most:
// a handshake the server never takes must not hold the run).
func (r *Runner) census(t totals) {
	if r.censusAt == 0 || r.censused || !t.censusDone {
		return
	}
	if r.censusPaused.IsZero() {
		r.censusPaused = time.Now()
	}
	if t.accepted < t.clientEstablished && !r.cfg.clientOnly() && time.Since(r.censusPaused) < 2*time.Second {
		return
	}
	r.censused = true
	if r.onCensus != nil {
		if err := r.onCensus(t.clientEstablished); err != nil {
			fmt.Fprintf(r.cfg.Log, "warning: the census: %v\n", err)
		}
	}
	r.send(Client, worker.CmdResume)
	r.censusPause = time.Since(r.censusPaused)
}

func (r *Runner) connect(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseConnect, start, 0) // the phase begins: the CPU samples' tag
	r.send(Client, worker.CmdConnect)
	lastShow, lastEst := time.Now(), uint64(0)
	tick := func(t totals) {
		if ctx.Err() != nil {
			r.stop(limit.Interrupted, "interrupted by a signal during the connect phase")
		}
		if r.anyDied() {
			r.stop(limit.WorkerDied, "")
		}
		if kind, detail := r.guard(); kind != "" {
			r.stop(kind, detail)
		}
		r.calibrate(t.clientEstablished)
		r.census(t)
		if now := time.Now(); now.Sub(lastShow) >= 250*time.Millisecond {
			rate := float64(t.clientEstablished-lastEst) / now.Sub(lastShow).Seconds()
			r.progress(PhaseConnect, start, rate)
			lastShow, lastEst = now, t.clientEstablished
		}
	}
	if r.memcap != nil {
		done, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			r.memcap.Watch(done, func() uint64 { return r.totals().clientEstablished }, r.stop)
		}()
		// The watch writes the cap's peak, which the result reads.
		defer func() { close(done); <-exited }()
	}
	// Every handshake accepted; or no server worker accepting any more (each
	// full, or stopped by a limit); or a worker dead: what it held is gone, and
	// the rest of the accept queue may have no server worker left to take it.
	allIn := func(t totals) bool {
		r.census(t) // on every report, not only each tick: the pause is short
		return t.connectDone && (t.accepted >= t.clientEstablished || t.acceptDone || r.anyDied())
	}
	// --rate spaces connections out: a gap the pacing makes is no stall.
	stallAfter := r.cfg.Timeout
	if r.cfg.Rate > 0 {
		stallAfter += time.Duration(float64(r.plan.ClientWorkers) / r.cfg.Rate * float64(time.Second))
	}
	if r.waitFor(allIn, tick, func() time.Duration { return stallAfter }) {
		t := r.totals()
		if !t.connectDone {
			r.stop(limit.ConnectStalled, fmt.Sprintf("no connection completed for %s (--timeout, and --rate's spacing): SYNs dropped? see listen_overflows", stallAfter.Round(time.Millisecond)))
			r.waitFor(allIn, tick, func() time.Duration { return stallAfter })
		}
	}
	t := r.totals()
	res.Phases.ConnectSeconds = time.Since(start).Seconds()
	r.mu.Lock()
	if r.limit != nil {
		// A limit binds at what is held, at both ends, once opening has
		// stopped, not at the count when one worker first met it: server
		// workers, which hold the listener too, may take a few fewer.
		r.limit.At = min(t.clientEstablished, t.accepted)
	}
	r.mu.Unlock()
	if t.accepted < t.clientEstablished {
		// Completed handshakes no server worker took from the accept queue.
		res.Failed[worker.FailNotAccepted.String()] += t.clientEstablished - t.accepted
	}
	r.progress(PhaseConnect, start, 0)
}

func (r *Runner) exchange(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseExchange, start, 0)
	r.send("", worker.CmdExchange)
	guarded := false
	tick := func(totals) {
		r.progress(PhaseExchange, start, 0)
		if ctx.Err() != nil && r.cfg.Timeout > 2*time.Second {
			// Verify what is held even when interrupted, but do not wait long.
			r.cfg.Timeout = 2 * time.Second
		}
		// --payload can queue 64 MiB a side per connection: the host is
		// guarded here too, and an exchange it stops counts what is missing.
		// A smaller machine's run into swap is left to verify what it holds:
		// two small messages a connection, while it thrashes by design (cut
		// short at its guard, an 8 GiB run verified 176k of 574k).
		if kind, detail := r.guard(); kind != "" && !guarded && (r.machine == nil || r.cfg.Payload > 0) {
			guarded = true
			r.mu.Lock()
			r.setLimit(kind, detail+" (during the exchange; the hold is skipped)")
			r.guarded = true
			r.mu.Unlock()
			r.cfg.Timeout = min(r.cfg.Timeout, time.Second)
		}
	}
	// With a payload, a connection is through when its client has read
	// the server's too: the peak is sampled when the payload has settled.
	r.waitFor(func(t totals) bool { return t.exchangeDone && (r.cfg.Payload == 0 || t.clientExchangeDone) }, tick, r.timeout)
	// Count what is still missing, and get every worker's final counts.
	r.sync(worker.CmdFinish)
	res.Phases.ExchangeSeconds = time.Since(start).Seconds()
	// The final counts, so that the recorder's last sample of the phase
	// shows every verified connection, not the last periodic report's.
	r.progress(PhaseExchange, start, 0)
}

// hold keeps every connection open for --hold, until a signal, or until a
// worker dies: the OOM killer taking one is a limit the run must name.
func (r *Runner) hold(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseHold, start, 0)
	var expired <-chan time.Time
	if r.cfg.Hold > 0 {
		timer := time.NewTimer(r.cfg.Hold)
		defer timer.Stop()
		expired = timer.C
	}
	// A countdown for the progress line, every second.
	second := time.NewTicker(time.Second)
	defer second.Stop()
wait:
	for !r.anyDied() {
		select {
		case <-ctx.Done():
			res.Phases.HoldCutShort = true
			break wait
		case <-expired:
			break wait
		case <-second.C:
			r.progress(PhaseHold, start, 0)
		case <-r.notify: // a report, or a worker's exit
		}
		if t := r.totals(); r.cfg.Mode == ModeDial && t.verified > 0 && t.peerClosed >= t.verified {
			break // the server closed every connection
		}
	}
	res.Phases.HoldSeconds = time.Since(start).Seconds()
}

func (r *Runner) close(res *Result) {
	start := time.Now()
	r.progress(PhaseClose, start, 0)
	// Clients first: their RSTs free the server side's sockets, which then
	// close without a FIN exchange.
	for _, role := range []Role{Client, Server} {
		r.send(role, worker.CmdClose)
		r.waitFor(func(totals) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, p := range r.procs {
				if p.role == role && p.state == nil && p.stats.CloseDone == 0 {
					return false
				}
			}
			return true
		}, nil, r.timeout)
	}
	res.Phases.CloseSeconds = time.Since(start).Seconds()
	r.progress(PhaseClose, start, 0)
}

// timeout is --timeout, which a signal during the exchange shortens.
func (r *Runner) timeout() time.Duration { return r.cfg.Timeout }

func (r *Runner) phaseDone(p Phase) error {
	if r.cfg.OnPhase == nil {
		return nil
	}
	return r.cfg.OnPhase(p)
}

func (r *Runner) progress(phase Phase, start time.Time, rate float64) {
	if r.cfg.OnProgress == nil {
		return
	}
	t := r.totals()
	var failed uint64
	for _, v := range t.failed {
		failed += v
	}
	p := Progress{Phase: phase, Requested: r.cfg.Conns, Established: t.clientEstablished, Accepted: t.accepted,
		Verified: t.verified, Failed: failed, Rate: rate, Elapsed: time.Since(start)}
	if r.cfg.Mode == ModeServe {
		p.Established = t.accepted // its clients are elsewhere
	}
	if phase == PhaseClose {
		// What is still open: the time series follows the close down.
		p.Established -= min(p.Established, t.clientClosed)
	}
	switch {
	case phase == PhaseHold && r.cfg.Hold > 0:
		p.ETA = max(0, r.cfg.Hold-p.Elapsed)
	case rate > 0 && int(t.clientEstablished) < r.cfg.Conns:
		p.ETA = time.Duration(float64(uint64(r.cfg.Conns)-t.clientEstablished) / rate * float64(time.Second))
	}
	if m, err := procfs.ReadMeminfo(); err == nil {
		p.MemAvailable = m.MemAvailable
	}
	r.cfg.OnProgress(p)
}

// pressure is the share of the last seconds in which every task waited for
// memory, from PSI's cumulative stall time read by the run itself: avg10
// would carry the stalls of whatever ran before the run for a minute.
type pressure struct {
	mu      sync.Mutex
	samples []stallSample
}

type stallSample struct {
	at    time.Time
	stall time.Duration
}

// pressureWindow is what the share is taken over: PSI's own avg10 span.
const pressureWindow = 10 * time.Second

// share reads PSI now and returns the stalled share of the window (0–100);
// ok is false until a window has passed, or where PSI is off.
func (p *pressure) share() (pct float64, ok bool) {
	stall, ok := procfs.MemoryStall()
	if !ok {
		return 0, false
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, stallSample{now, stall})
	// Keep the newest sample at least a window old, and those after it.
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= pressureWindow {
		p.samples = p.samples[1:]
	}
	first := p.samples[0]
	if now.Sub(first.at) < pressureWindow {
		return 0, false
	}
	return 100 * float64(stall-first.stall) / float64(now.Sub(first.at)), true
}
