package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"golang.org/x/sys/unix"
)

// Runner holds one run: its plan, its workers and what it changed on the host.
type Runner struct {
	cfg    Config
	host   Host
	plan   Plan
	tuning Tuning
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
	total        int // dial: connections over all dialers; Conns is this one's share
	runChanges
	vmStart map[string]uint64
	notify  chan struct{}

	mu         sync.Mutex
	procs      []*proc
	limit      *Limit  // the first limit that bound
	held       *uint64 // held at both ends after a worker died (sock_diag)
	heldAtPeak *uint64 // the same, when the worker died before the peak
	stopping   bool
	aborted    bool
	guarded    bool // a guard tripped after the connect phase
	censusState
	deathState
}

// runChanges are what a run changes on the host: all of them, in order
// (Prepare), and those it has made, which cleanup undoes in reverse; and
// the changes the run also reads from, each nil when not asked for.
type runChanges struct {
	changes, applied []host.Change
	sysctls          []KeyValue // set for the run: --port-range, then --sysctl
	journal          *sysctl.Journal
	memcap           *host.Memcap   // --mem-limit
	swap             *host.Swap     // --swap
	machine          *host.Machine  // --machine-mem
	ballast          *ballast       // --ballast
	pressure         host.Pressure  // PSI over the run's own last seconds
	oom              host.OOMShield // the parent out of the OOM killer's reach
}

// censusState is the census (--kmem census, SetCensus): where, what to
// call, when every client paused, and done.
type censusState struct {
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

// Config is the run's configuration, as Prepare resolved it.
func (r *Runner) Config() Config { return r.cfg }

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
	res = r.newResult()
	if err := os.MkdirAll(r.cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	// Killed before the host is put back, the run is found by its marker.
	unmark, err := host.Mark(r.cfg.OutDir)
	if err != nil {
		return res, fmt.Errorf("marking the run in %s: %w", host.MarkerDir, err)
	}
	defer func() {
		defer unmark()
		r.cleanup()
		r.digestServerLog(res)
		// Again, for what the sysctls' undo could not write back then.
		if rerr := r.journal.Restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring sysctls: %w", rerr))
		}
		res.SysctlChanges = r.journal.Changes()
		res.WallSeconds = time.Since(start).Seconds()
	}()

	r.begin(res)
	r.applied, err = host.ApplyAll(r.cfg.OutDir, r.changes)
	r.changesInResult(res)
	if err != nil {
		return res, err
	}
	r.vmStart, _ = procfs.ReadVmstat()
	before, err := procfs.ReadListenCounters()
	if err != nil {
		return res, fmt.Errorf("reading listen counters: %w", err)
	}
	if err := r.startEnds(); err != nil {
		return res, err
	}
	r.predict()
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
	r.atPeak(res)
	if err := r.phaseDone(PhaseExchange); err != nil {
		return res, err
	}
	if err := r.countEndpoints(res); err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: counting client endpoints with sock_diag: %v\n", err)
	}
	r.recountAfterDeath(true)
	if err := r.holdIfAsked(ctx, res); err != nil {
		return res, err
	}

	r.close(res)
	if err := r.phaseDone(PhaseClose); err != nil {
		return res, err
	}
	after, err := procfs.ReadListenCounters()
	if err == nil {
		res.ListenOverflows = after.Overflows - before.Overflows
		res.ListenDrops = after.Drops - before.Drops
		res.SoftnetDropped = after.SoftnetDropped - before.SoftnetDropped
	}
	r.finishResult(res)
	return res, nil
}

// holdIfAsked holds every connection for --hold (a dialer until its server
// closes, --hold at most) unless the run is already cut short, then checks
// what a run that exchanges nothing holds.
func (r *Runner) holdIfAsked(ctx context.Context, res *Result) error {
	if (r.cfg.Hold > 0 || r.cfg.Mode == ModeDial) && ctx.Err() == nil && !r.anyDied() && !r.guarded {
		r.hold(ctx, res)
		r.recountAfterDeath(false)
		if r.cfg.Mode == ModeServe {
			r.dialersAfterHold(res)
		}
		if err := r.phaseDone(PhaseHold); err != nil {
			return err
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
	return nil
}

// begin counts the OOM kills before the run, and takes the parent out of
// the OOM killer's reach where it may.
func (r *Runner) begin(res *Result) {
	if vm, err := procfs.ReadVmstat(); err == nil {
		r.oomKillsAtStart = vm["oom_kill"]
	}
	r.began = time.Now()
	r.oom.Shield()
	res.ParentOOMShielded = r.oom.Shielded
}

// newResult is the result as it stands before the run: what it plans.
func (r *Runner) newResult() *Result {
	return &Result{
		Requested: r.cfg.Conns, Server: ServerResult{Addr: r.serverAddr().Addr().String(), Port: int(r.serverAddr().Port()),
			External: r.cfg.External(), Exchange: string(r.cfg.Exchange), Cmd: r.cfg.ServerCmd},
		SourceAddresses: len(r.plan.Sources), Plan: r.plan, Failed: map[string]uint64{},
		SourcePorts: SourcePorts{Range: fmt.Sprintf("%d-%d", r.tuning.PortLo, r.tuning.PortHi), HeldByOthers: r.plan.PortsHeld,
			FreePerAddress: r.plan.PortsFree, Addresses: len(r.plan.Sources), ChosenBy: string(r.cfg.PortChoice)},
		Workers: WorkerCounts{Client: r.plan.ClientWorkers, Server: r.plan.ServerWorkers}, Settings: r.settings(),
	}
}

// startEnds starts the server end (the one the user brought, or the
// built-in listener) and the workers, and samples a brought server idle.
func (r *Runner) startEnds() error {
	if r.cfg.External() {
		if err := r.startServer(); err != nil {
			return err
		}
	} else if !r.cfg.clientOnly() {
		if err := r.listen(); err != nil {
			return err
		}
	}
	if err := r.spawn(); err != nil {
		return err
	}
	if r.cfg.External() {
		if err := r.sampleServer(&r.serverIdle); err != nil {
			return err
		}
		if r.cfg.ServerCmd != "" && r.cfg.OnServerUp != nil {
			r.cfg.OnServerUp(r.ServerChecks())
		}
	}
	return nil
}

// atPeak reads what the run holds at its peak, when everything it will
// hold is held. The runner's own memory is read before any observer
// (probes, sock_diag) grows the parent.
func (r *Runner) atPeak(res *Result) {
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

// changesInResult records in the result what the changes made: the
// memory cgroup, the swapfile.
func (r *Runner) changesInResult(res *Result) {
	if r.memcap != nil {
		res.Memcap = r.memcap.Result
	}
	if r.swap != nil && r.swap.Path != "" {
		res.Swap = &SwapResult{Bytes: r.cfg.Swap, Path: r.swap.Path}
		fmt.Fprintf(r.cfg.Log, "swap: %s of swapfile at %s for the run\n", units.Bytes(r.cfg.Swap), r.swap.Path)
	}
}

// predict prints, with the workers up and idle, what the memory cap and a
// smaller machine should hold.
func (r *Runner) predict() {
	if r.memcap != nil {
		r.memcap.Predict()
	}
	if r.machine != nil {
		per, _ := r.host.KernelBytesPerConn(r.cfg.Family)
		r.machine.Predict(per, r.cfg.Conns)
	}
}

// guards are what stops the run before the host comes to harm: every
// change that guards itself, and the host's reserve unless a smaller
// machine's guard replaces it.
func (r *Runner) guards() []host.Guard {
	var gs []host.Guard
	for _, c := range r.applied {
		if g, ok := c.(host.Guard); ok {
			gs = append(gs, g)
		}
	}
	if r.machine == nil {
		gs = append(gs, host.Reserve{Bytes: r.cfg.Reserve, Pressure: &r.pressure})
	}
	return gs
}

// guard says which of the run's guards has tripped, if any.
func (r *Runner) guard() (limit.Kind, string) {
	for _, g := range r.guards() {
		if kind, detail := g.Guard(); kind != "" {
			return kind, detail
		}
	}
	return "", ""
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
