package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

// creatable says whether dir exists or could be made: its nearest existing
// ancestor must be a directory this process may write. Checked without
// creating anything, so that bad input leaves nothing behind.
func creatable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			if err := unix.Access(d, unix.W_OK); err != nil {
				return fmt.Errorf("%s is not writable: %w", d, err)
			}
			return nil
		}
		if !os.IsNotExist(err) {
			return err
		}
		if d == filepath.Dir(d) {
			return err
		}
	}
}

// bindable says whether a socket can take a as its source address: every
// connection from a source that is not local fails at bind().
func bindable(a netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The address alone, no port taken (IP_BIND_ADDRESS_NO_PORT, Linux 4.2).
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	return unix.Bind(fd, &unix.SockaddrInet4{Addr: a.As4()})
}

// Runner holds one run: its plan, its workers and what it changed on the host.
type Runner struct {
	cfg     Config
	host    Host
	plan    Plan
	tuning  Tuning
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
	procs    []*proc
	memcg    *memcg
	memPeak  uint64
	swap     *swapfile
	vmStart  map[string]uint64
	notify   chan struct{}

	oomKillsAtStart uint64
	memLastEst      uint64
	memLastMove     time.Time
	memRateAt       time.Time
	memRateEst      uint64
	memRate         float64 // connections per second

	mu        sync.Mutex
	limit     *Limit // the first limit that bound
	stopping  bool
	abortOnce sync.Once
}

type proc struct {
	role   string
	index  int
	quota  int
	cmd    *exec.Cmd
	ctl    *os.File
	pid    int
	exited chan struct{}

	// guarded by Runner.mu
	stats      Stats
	reports    uint64
	state      *os.ProcessState
	expectExit bool
}

// Limit is the first limit that bound, and at how many connections.
type Limit struct {
	Kind   string `json:"kind"`
	At     uint64 `json:"at"`
	Detail string `json:"detail"`
}

// Prepare reads the host and plans the run. It changes nothing on the host,
// so every bad input is reported before anything is touched.
func Prepare(cfg Config) (*Runner, error) {
	if cfg.Conns <= 0 {
		return nil, badInput("--conns must be a positive number of connections, got %d", cfg.Conns)
	}
	if !cfg.Listen.Addr().Is4() {
		return nil, badInput("--listen must be an IPv4 address:port, got %s", cfg.Listen)
	}
	if cfg.Listen.Port() == 0 {
		return nil, badInput("--listen needs a port other than 0, got %s", cfg.Listen)
	}
	for _, s := range cfg.Sources {
		if !s.Is4() {
			return nil, badInput("--src takes IPv4 addresses, got %s", s)
		}
		if err := bindable(s); err != nil {
			return nil, badInput("--src %s is not an address of this host (bind: %v); add it (ip addr add %s dev lo) or leave it out", s, err, s)
		}
	}
	if cfg.Inflight <= 0 {
		return nil, badInput("--inflight must be positive, got %d", cfg.Inflight)
	}
	if cfg.Rate < 0 {
		return nil, badInput("--rate must not be negative, got %g", cfg.Rate)
	}
	if cfg.Payload < 0 || cfg.Payload > 64<<20 {
		return nil, badInput("--payload must be between 0 and 64MiB, got %d bytes", cfg.Payload)
	}
	if cfg.MemLimit > 0 && cfg.MemLimit < 32<<20 {
		return nil, badInput("--mem-limit must be at least 32MiB (the workers alone need that), got %d bytes", cfg.MemLimit)
	}
	if cfg.Unread && cfg.Payload == 0 {
		return nil, badInput("--unread needs a --payload to leave unread")
	}
	if cfg.Timeout <= 0 {
		return nil, badInput("--timeout must be positive, got %s", cfg.Timeout)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	host, err := ReadHost()
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, host: host, notify: make(chan struct{}, 1), connectTo: cfg.Listen}
	if cfg.Listen.Addr().IsUnspecified() {
		r.connectTo = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), cfg.Listen.Port())
	}

	r.tuning = Tuning{Backlog: max(host.Somaxconn, host.SynBacklog), PortLo: host.PortLo, PortHi: host.PortHi}
	if cfg.PortRange != [2]int{} {
		lo, hi := cfg.PortRange[0], cfg.PortRange[1]
		if lo < 1 || hi > 65535 || lo > hi {
			return nil, badInput("--port-range must be LO-HI within 1-65535, got %d-%d", lo, hi)
		}
		r.tuning.PortLo, r.tuning.PortHi = lo, hi
	}
	// The accept queue absorbs connects in flight plus whatever the server
	// workers have not yet accepted; 65,535 is the historical u16 cap of
	// sk_max_ack_backlog and plenty with pacing.
	if want := int64(min(65535, max(cfg.Conns, 4*cfg.Inflight))); want > r.tuning.Backlog {
		r.tuning.Backlog = want
	}
	for _, kv := range cfg.Sysctls {
		if err := sysctl.Check(kv.Key); err != nil {
			return nil, badInput("--sysctl: %v", err)
		}
		if strings.TrimSpace(kv.Value) == "" {
			return nil, badInput("--sysctl %s needs a value", kv.Key)
		}
	}

	needsRoot := len(cfg.Sysctls) > 0 || cfg.PortRange != [2]int{} || cfg.MemLimit > 0 || cfg.Swap > 0
	if cfg.Swap > 0 {
		if _, err := exec.LookPath("mkswap"); err != nil {
			return nil, badInput("--swap needs mkswap (util-linux): %v", err)
		}
		if cfg.Swap < 1<<20 {
			return nil, badInput("--swap must be at least 1MiB, got %d bytes", cfg.Swap)
		}
	}
	if cfg.MemLimit > 0 {
		if _, _, err := findMemcgParent(); err != nil {
			return nil, badInput("--mem-limit: %v", err)
		}
	}
	if !cfg.NoTune && (host.Somaxconn < r.tuning.Backlog || host.SynBacklog < r.tuning.Backlog) {
		needsRoot = true
	}
	if needsRoot && !host.Root {
		return nil, badInput("this run changes sysctls (accept backlog to %d, --port-range or --sysctl), which needs root: rerun with sudo, or pass --no-tune", r.tuning.Backlog)
	}

	nofile := host.NoFileHard
	if cfg.WorkerFDs > 0 {
		nofile = cfg.WorkerFDs
		if nofile > host.NoFileHard && !host.CanRaiseNoFile {
			return nil, badInput("--worker-fds %d is above the hard RLIMIT_NOFILE of %d, and raising it needs CAP_SYS_RESOURCE", nofile, host.NoFileHard)
		}
		if nofile <= fdReserve {
			return nil, badInput("--worker-fds must be above %d (a worker keeps that many for itself), got %d", fdReserve, nofile)
		}
	} else if host.CanRaiseNoFile && uint64(host.NrOpen) > nofile {
		// Fewer, larger workers where the hard limit can be raised.
		nofile = uint64(host.NrOpen)
	}
	r.plan, err = MakePlan(PlanInput{
		Conns: cfg.Conns, NoFile: nofile, MaxWorkers: cfg.MaxWorkers,
		Sources: cfg.Sources, PortLo: r.tuning.PortLo, PortHi: r.tuning.PortHi,
	})
	if err != nil {
		return nil, badInput("%v", err)
	}
	// A run directory holds one run: files a second run does not write
	// (its probes' stacks, a swap marker) would pass for its own.
	if entries, err := os.ReadDir(cfg.OutDir); err == nil && len(entries) > 0 {
		return nil, badInput("--out %s already holds files (another run's?); give a new directory", cfg.OutDir)
	}
	if err := creatable(cfg.OutDir); err != nil {
		return nil, badInput("--out %s cannot be created: %v", cfg.OutDir, err)
	}
	return r, nil
}

// Host returns what Prepare read.
func (r *Runner) Host() Host { return r.host }

// Plan returns the plan.
func (r *Runner) Plan() Plan { return r.plan }

// Preflight returns the limits table.
func (r *Runner) Preflight() []Check {
	return Preflight(r.host, r.plan, r.tuning, r.cfg.Reserve, r.cfg.NoTune)
}

// SetOnPhase replaces the phase callback; for observers that need the
// runner itself (the memory cap's prediction reads the cgroup at idle).
func (r *Runner) SetOnPhase(fn func(Phase) error) { r.cfg.OnPhase = fn }

// Abort kills every worker now; Run then restores and returns. For a second SIGINT.
func (r *Runner) Abort() {
	r.abortOnce.Do(func() {
		r.mu.Lock()
		r.setLimit("interrupted", "aborted by a second signal")
		r.mu.Unlock()
		for _, p := range r.procs {
			_ = unix.Kill(p.pid, unix.SIGKILL)
		}
	})
}

// Run does the run. The host is restored on every path out of it.
func (r *Runner) Run(ctx context.Context) (res *Result, err error) {
	start := time.Now()
	res = &Result{
		Requested: r.cfg.Conns, Server: Endpoint{Addr: r.cfg.Listen.Addr().String(), Port: int(r.cfg.Listen.Port())},
		SourceAddresses: len(r.plan.Sources), Plan: r.plan, Failed: map[string]uint64{},
		Workers: WorkerCounts{Client: r.plan.ClientWorkers, Server: r.plan.ServerWorkers},
	}
	if err := os.MkdirAll(r.cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	r.journal = sysctl.NewJournal(filepath.Join(r.cfg.OutDir, JournalFile))
	defer func() {
		r.cleanup()
		if rerr := r.journal.Restore(); rerr != nil {
			err = errorsJoin(err, fmt.Errorf("restoring sysctls: %w", rerr))
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
	if r.cfg.MemLimit > 0 {
		if err := r.makeMemcg(res); err != nil {
			return res, err
		}
	}
	if r.cfg.Swap > 0 {
		s, err := newSwap(r.cfg.OutDir, r.cfg.Swap)
		if err != nil {
			return res, err
		}
		r.swap = s
		res.Swap = &SwapResult{Bytes: r.cfg.Swap, Path: s.path}
		fmt.Fprintf(r.cfg.Log, "swap: %s of swapfile at %s for the run\n", units.Bytes(r.cfg.Swap), s.path)
	}
	r.vmStart, _ = procfs.ReadVmstat()
	before, err := procfs.ReadListenCounters()
	if err != nil {
		return res, fmt.Errorf("reading listen counters: %w", err)
	}
	if err := r.listen(); err != nil {
		return res, err
	}
	if err := r.spawn(); err != nil {
		return res, err
	}
	if err := r.phaseDone(PhaseIdle); err != nil {
		return res, err
	}

	r.connect(ctx, res)
	if err := r.phaseDone(PhaseConnect); err != nil {
		return res, err
	}
	r.exchange(ctx, res)
	// The peak: everything the run will hold is held now. The runner's own
	// memory is read before any observer (probes, sock_diag) grows the parent.
	res.RunnerPss, res.RunnerPssByRole.Client, res.RunnerPssByRole.Server, res.RunnerPssByRole.Parent = r.pss()
	if res.Swap != nil {
		if m, err := procfs.ReadMeminfo(); err == nil {
			res.Swap.PeakUsed = m.SwapTotal - m.SwapFree
		}
	}
	res.MaxSocketsPerWorker = r.maxPerWorker()
	if err := r.phaseDone(PhaseExchange); err != nil {
		return res, err
	}
	if err := r.countEndpoints(res); err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: counting client endpoints with sock_diag: %v\n", err)
	}
	if r.cfg.Hold > 0 && ctx.Err() == nil && !r.anyDied() {
		r.progress(PhaseHold, time.Now(), 0)
		start := time.Now()
		select {
		case <-ctx.Done():
			res.Phases.HoldCutShort = true
		case <-time.After(r.cfg.Hold):
		}
		res.Phases.HoldSeconds = time.Since(start).Seconds()
		if err := r.phaseDone(PhaseHold); err != nil {
			return res, err
		}
	}
	if ctx.Err() != nil {
		r.mu.Lock()
		r.setLimit("interrupted", "interrupted by a signal")
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

// memoryPressureStop is the PSI "full avg10" at which a run stops opening: a
// tenth of the time with every task stalled on memory is a host in trouble.
const memoryPressureStop = 10.0

// JournalFile is the sysctl journal's name inside the run directory.
const JournalFile = "sysctl-journal.json"

// Restore undoes the sysctl changes a run directory records; for a run that
// was killed before it could.
func Restore(dir string) ([]sysctl.Change, error) {
	j, err := sysctl.LoadJournal(filepath.Join(dir, JournalFile))
	if err != nil {
		return nil, err
	}
	err = j.Restore()
	return j.Changes(), err
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
	if !r.cfg.NoTune {
		want := fmt.Sprint(r.tuning.Backlog)
		if r.host.Somaxconn < r.tuning.Backlog {
			if err := set("net.core.somaxconn", want); err != nil {
				return err
			}
		}
		if r.host.SynBacklog < r.tuning.Backlog {
			if err := set("net.ipv4.tcp_max_syn_backlog", want); err != nil {
				return err
			}
		}
	}
	if r.cfg.PortRange != [2]int{} {
		if err := set("net.ipv4.ip_local_port_range", fmt.Sprintf("%d %d", r.tuning.PortLo, r.tuning.PortHi)); err != nil {
			return err
		}
	}
	for _, kv := range r.cfg.Sysctls {
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
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	r.listener = os.NewFile(uintptr(fd), "listener")
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt(SO_REUSEADDR)", err)
	}
	sa := &unix.SockaddrInet4{Port: int(r.cfg.Listen.Port()), Addr: r.cfg.Listen.Addr().As4()}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("listening on %s: %w", r.cfg.Listen, err)
	}
	if err := unix.Listen(fd, int(r.tuning.Backlog)); err != nil {
		return os.NewSyscallError("listen", err)
	}
	return nil
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
	listener := r.listener
	sources := make([]string, len(r.plan.Sources))
	for i, s := range r.plan.Sources {
		sources[i] = s.String()
	}
	if r.cfg.OnSpawn != nil {
		if err := r.cfg.OnSpawn(os.Getpid()); err != nil {
			return err
		}
	}
	var pids bytes.Buffer
	for i := range r.plan.ServerWorkers {
		wc := workerConfig{Proto: protoVersion, Role: "server", Index: i, Quota: Quota(r.cfg.Conns, r.plan.ServerWorkers, i),
			Base: uint32(i * r.plan.ConnsPerWorker), NoFile: r.plan.NoFile, Payload: r.cfg.Payload, Unread: r.cfg.Unread}
		wc.Quota = max(wc.Quota, min(r.plan.ConnsPerWorker, r.cfg.Conns))
		if err := r.start(exe, wc, listener); err != nil {
			return err
		}
	}
	perWorkerRate := r.cfg.Rate / float64(r.plan.ClientWorkers)
	for i := range r.plan.ClientWorkers {
		wc := workerConfig{Proto: protoVersion, Role: "client", Index: i, Quota: Quota(r.cfg.Conns, r.plan.ClientWorkers, i),
			NoFile: r.plan.NoFile, Sources: sources, Server: r.connectTo.String(),
			Inflight: max(1, r.cfg.Inflight/r.plan.ClientWorkers), Rate: perWorkerRate, Payload: r.cfg.Payload, Unread: r.cfg.Unread}
		if err := r.start(exe, wc, nil); err != nil {
			return err
		}
	}
	for _, p := range r.procs {
		fmt.Fprintf(&pids, "%d %s %d\n", p.pid, p.role, p.index)
	}
	return os.WriteFile(filepath.Join(r.cfg.OutDir, "workers.pids"), pids.Bytes(), 0o644)
}

func (r *Runner) start(exe string, wc workerConfig, listener *os.File) error {
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
	cmd := exec.Command(exe, WorkerArg)
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
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return fmt.Errorf("starting %s worker %d: %w", wc.Role, wc.Index, err)
	}
	p := &proc{role: wc.Role, index: wc.Index, quota: wc.Quota, cmd: cmd, ctl: ctl, pid: cmd.Process.Pid, exited: make(chan struct{})}
	r.procs = append(r.procs, p)
	// Workers open nothing before cmdConnect, so this is in time.
	if r.memcg != nil {
		if err := r.memcg.add(p.pid); err != nil {
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
			r.setLimit("worker_died", r.deathDetail(p))
		}
		r.mu.Unlock()
		close(p.exited)
		r.poke()
	}()
	return nil
}

func (r *Runner) deathDetail(p *proc) string {
	st := p.state
	how := st.String()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		how = "killed by " + unix.SignalName(ws.Signal())
		if ws.Signal() == syscall.SIGKILL {
			if vm, err := procfs.ReadVmstat(); err == nil && vm["oom_kill"] > r.oomKillsAtStart {
				how += fmt.Sprintf(" (the OOM killer: %d kills since the run started, see dmesg)", vm["oom_kill"]-r.oomKillsAtStart)
			}
		}
	}
	return fmt.Sprintf("%s worker %d (pid %d) %s; the run ended there", p.role, p.index, p.pid, how)
}

func (r *Runner) readStats(p *proc) {
	buf := make([]byte, statsSize+64)
	for {
		n, err := p.ctl.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var s Stats
		if s.unmarshal(buf[:n]) != nil {
			continue
		}
		r.mu.Lock()
		p.stats = s
		p.reports++
		if s.FirstFail != 0 && r.limit == nil {
			r.setLimit(limitFor(p, &s, r))
		}
		r.mu.Unlock()
		r.poke()
	}
}

func (r *Runner) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// setLimit records the first limit; later ones are the same limit's echoes.
// r.mu must be held.
func (r *Runner) setLimit(kind, detail string) {
	if r.limit == nil {
		r.limit = &Limit{Kind: kind, Detail: detail}
		r.limit.At = r.totalsLocked().clientEstablished
	}
}

func limitFor(p *proc, s *Stats, r *Runner) (string, string) {
	k := failKind(s.FirstFail - 1)
	errno := unix.Errno(s.FirstFailErrno)
	who := fmt.Sprintf("%s worker %d", p.role, p.index)
	switch k {
	case failEMFILE:
		return "fds", fmt.Sprintf("%s: %v after %d sockets (RLIMIT_NOFILE %d per process); raise the hard limit (needs CAP_SYS_RESOURCE) or allow more workers (--max-workers)",
			who, errno, s.Established, r.plan.NoFile)
	case failENFILE:
		return "file_max", fmt.Sprintf("%s: %v: fs.file-max (%d) open files system-wide; raise fs.file-max", who, errno, r.host.FileMax)
	case failPorts:
		src := netip.AddrFrom4(s.FirstFailSrc)
		return "ports", fmt.Sprintf("connect: no free source ports on %s (%s per address with ip_local_port_range %d–%d); use more --src addresses or widen the range",
			src, units.Count(int64(r.plan.PortsPerSource)), r.tuning.PortLo, r.tuning.PortHi)
	case failAddr:
		return "source_address", fmt.Sprintf("bind: %v for source %s: it is not an address of this host", errno, netip.AddrFrom4(s.FirstFailSrc))
	default:
		return "memory", fmt.Sprintf("%s: %v: the kernel could not allocate socket memory", who, errno)
	}
}

type totals struct {
	payloadSent, payloadRead                          uint64
	clientOpened, clientEstablished, received, echoed uint64
	accepted, sent, verified, closed                  uint64
	failed                                            [numFailKinds]uint64
	connectDone, exchangeDone, closeDone              bool
	closeNanos                                        int64
}

func (r *Runner) totals() totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.totalsLocked()
}

func (r *Runner) totalsLocked() totals {
	t := totals{connectDone: true, exchangeDone: true, closeDone: true}
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
		if p.role == "client" {
			t.clientOpened += s.Opened
			t.clientEstablished += s.Established
			t.received += s.Verified
			t.echoed += s.Sent
			t.connectDone = t.connectDone && (s.ConnectDone != 0 || dead)
		} else {
			t.accepted += s.Established
			t.sent += s.Sent
			t.verified += s.Verified
			t.exchangeDone = t.exchangeDone && (s.ExchangeDone != 0 || dead)
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

func (r *Runner) send(role string, c command) {
	for _, p := range r.procs {
		if role == "" || p.role == role {
			_, _ = p.ctl.Write([]byte{byte(c)})
		}
	}
}

// stop ends the connect phase early for the named reason.
func (r *Runner) stop(kind, detail string) {
	r.mu.Lock()
	r.setLimit(kind, detail)
	already := r.stopping
	r.stopping = true
	r.mu.Unlock()
	if !already {
		r.send("client", cmdStop)
	}
}

// waitFor waits until done() holds, calling tick about every 100 ms. It gives
// up when the counters returned by progress stop moving for cfg.Timeout.
func (r *Runner) waitFor(done func(totals) bool, tick func(totals)) (stalled bool) {
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
		} else if time.Since(lastMove) > r.cfg.Timeout {
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

func (r *Runner) connect(ctx context.Context, res *Result) {
	start := time.Now()
	r.send("client", cmdConnect)
	lastShow, lastEst := time.Now(), uint64(0)
	tick := func(t totals) {
		if ctx.Err() != nil {
			r.stop("interrupted", "interrupted by a signal during the connect phase")
		}
		if r.anyDied() {
			r.stop("worker_died", "")
		}
		if m, err := procfs.ReadMeminfo(); err == nil && m.Spare() < r.cfg.Reserve {
			r.stop("memory_reserve", fmt.Sprintf("spare memory (free + page cache; MemAvailable %s also counts the sockets' pinned dentries and inodes) fell to %s, below the reserve of %s (--reserve): the host is guarded before it runs out",
				units.Bytes(m.MemAvailable), units.Bytes(m.Spare()), units.Bytes(r.cfg.Reserve)))
		}
		if full, ok := procfs.MemoryPressure(); ok && full >= memoryPressureStop {
			r.stop("memory_pressure", fmt.Sprintf("every task waited for memory %.0f %% of the last 10 s (PSI full avg10): the kernel is reclaiming; stopped before it stalls the host", full))
		}
		if now := time.Now(); now.Sub(lastShow) >= 250*time.Millisecond {
			rate := float64(t.clientEstablished-lastEst) / now.Sub(lastShow).Seconds()
			r.progress(PhaseConnect, start, rate)
			lastShow, lastEst = now, t.clientEstablished
		}
	}
	if r.memcg != nil {
		done := make(chan struct{})
		defer close(done)
		go r.watchMemcap(done)
	}
	allIn := func(t totals) bool { return t.connectDone && t.accepted+t.failed[failEMFILE] >= t.clientEstablished }
	if r.waitFor(allIn, tick) {
		t := r.totals()
		if !t.connectDone {
			r.stop("connect_stalled", fmt.Sprintf("no connection completed for %s (--timeout): SYNs dropped? see listen_overflows", r.cfg.Timeout))
			r.waitFor(allIn, tick)
		}
	}
	t := r.totals()
	res.Phases.ConnectSeconds = time.Since(start).Seconds()
	r.mu.Lock()
	if r.limit != nil {
		// A limit binds at what is held once opening has stopped, not at the
		// count when one worker first met it.
		r.limit.At = t.clientEstablished
	}
	r.mu.Unlock()
	if t.accepted < t.clientEstablished {
		// Completed handshakes no server worker took from the accept queue.
		res.Failed[failNotAccepted.String()] += t.clientEstablished - t.accepted
	}
	r.progress(PhaseConnect, start, 0)
}

func (r *Runner) exchange(ctx context.Context, res *Result) {
	start := time.Now()
	r.send("server", cmdExchange)
	tick := func(totals) {
		r.progress(PhaseExchange, start, 0)
		if ctx.Err() != nil && r.cfg.Timeout > 2*time.Second {
			// Verify what is held even when interrupted, but do not wait long.
			r.cfg.Timeout = 2 * time.Second
		}
	}
	r.waitFor(func(t totals) bool { return t.exchangeDone }, tick)
	// Count what is still missing, and get every worker's final counts.
	r.sync(cmdFinish)
	res.Phases.ExchangeSeconds = time.Since(start).Seconds()
	// The final counts, so that the recorder's last sample of the phase
	// shows every verified connection, not the last periodic report's.
	r.progress(PhaseExchange, start, 0)
}

// sync sends c to every live worker and waits for each to report back.
func (r *Runner) sync(c command) {
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

func (r *Runner) close(res *Result) {
	start := time.Now()
	// Clients first: their RSTs free the server side's sockets, which then
	// close without a FIN exchange.
	for _, role := range []string{"client", "server"} {
		r.mu.Lock()
		seen := make(map[*proc]uint64)
		for _, p := range r.procs {
			seen[p] = p.reports
		}
		r.mu.Unlock()
		r.send(role, cmdClose)
		r.waitFor(func(totals) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, p := range r.procs {
				if p.role == role && p.state == nil && p.stats.CloseDone == 0 {
					return false
				}
			}
			return true
		}, nil)
	}
	res.Phases.CloseSeconds = time.Since(start).Seconds()
}

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
	if rate > 0 && int(t.clientEstablished) < r.cfg.Conns {
		p.ETA = time.Duration(float64(uint64(r.cfg.Conns)-t.clientEstablished) / rate * float64(time.Second))
	}
	if m, err := procfs.ReadMeminfo(); err == nil {
		p.MemAvailable = m.MemAvailable
	}
	r.cfg.OnProgress(p)
}

// maxPerWorker is the most sockets one worker held.
func (r *Runner) maxPerWorker() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m uint64
	for _, p := range r.procs {
		m = max(m, p.stats.Established)
	}
	return m
}

// pss sums the proportional set size of the parent and every worker, so the
// program text they share counts once; also by role, the parent apart.
func (r *Runner) pss() (total, client, server, parent uint64) {
	parent, _ = procfs.Pss(os.Getpid())
	for _, p := range r.procs {
		v, err := procfs.Pss(p.pid)
		if err != nil {
			continue
		}
		if p.role == "client" {
			client += v
		} else {
			server += v
		}
	}
	return parent + client + server, client, server, parent
}

// countEndpoints asks the kernel, not the workers, which established sockets
// sit on the server port and how many distinct client endpoints they face;
// the same dump records what every socket of the run holds in buffers.
func (r *Runner) countEndpoints(res *Result) error {
	seen := make(map[[4]byte]*[65536 / 64]uint64)
	var onPort uint64
	server := r.connectTo
	err := sockdiag.DumpIPv4(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		switch {
		case s.Local == server: // the server's end
			res.SocketBuffersBySide.Server += s.Queued()
		case s.Remote == server:
			res.SocketBuffersBySide.Client += s.Queued()
			res.PeakSocketBuffered = append(res.PeakSocketBuffered, s.Buffered())
			return
		default:
			return
		}
		res.PeakSocketBuffered = append(res.PeakSocketBuffered, s.Buffered())
		onPort++
		a := s.Remote.Addr().As4()
		m := seen[a]
		if m == nil {
			m = new([65536 / 64]uint64)
			seen[a] = m
		}
		p := s.Remote.Port()
		m[p/64] |= 1 << (p % 64)
	})
	if err != nil {
		return err
	}
	var distinct uint64
	for _, m := range seen {
		for _, w := range m {
			distinct += uint64(bits.OnesCount64(w))
		}
	}
	res.ServerSockets = onPort
	res.DistinctClientEndpoints = distinct
	res.SocketBuffers = res.SocketBuffersBySide.Client + res.SocketBuffersBySide.Server
	return nil
}

func (r *Runner) finishResult(res *Result) {
	t := r.totals()
	res.Established = t.clientEstablished
	res.Accepted = t.accepted
	res.ReserveBytes = r.cfg.Reserve
	if vm, err := procfs.ReadVmstat(); err == nil && res.Swap != nil {
		res.Swap.SwapOut, res.Swap.SwapIn = vm["pswpout"]-r.vmStart["pswpout"], vm["pswpin"]-r.vmStart["pswpin"]
	}
	if res.Memcap != nil {
		res.Memcap.ActualConnections = t.clientEstablished
		res.Memcap.PeakUsageBytes = r.memPeak
		res.Memcap.LimitHits, res.Memcap.OOMKills = r.memcg.events()
		res.Memcap.StoppedBy = "complete"
	}
	res.Payload = PayloadResult{Bytes: r.cfg.Payload, Unread: r.cfg.Unread, Sent: t.payloadSent, Read: t.payloadRead}
	res.Verified = t.verified
	res.Echoed = t.echoed
	for k, v := range t.failed {
		if v > 0 {
			res.Failed[failKind(k).String()] += v
		}
	}
	if res.Phases.ConnectSeconds > 0 {
		res.ConnectRate = float64(t.clientEstablished) / res.Phases.ConnectSeconds
	}
	if s := res.Phases.ConnectSeconds + res.Phases.ExchangeSeconds; s > 0 {
		res.VerifiedRate = float64(t.verified) / s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(t.verified) < r.cfg.Conns {
		if r.limit == nil {
			r.limit = r.failureLimit(t)
		}
		if r.limit != nil && r.limit.Kind == "worker_died" && r.limit.Detail == "" {
			for _, p := range r.procs {
				if p.state != nil && !p.expectExit {
					r.limit.Detail = r.deathDetail(p)
					break
				}
			}
		}
		res.Limit = r.limit
	}
	res.StoppedBy = "complete"
	res.WorkerExecutable = r.workerExe
	if res.Limit != nil {
		res.StoppedBy = res.Limit.Kind
	}
	if res.Memcap != nil {
		res.Memcap.StoppedBy = res.StoppedBy
	}
}

// failureLimit names the commonest failure when no limit stopped the opening.
func (r *Runner) failureLimit(t totals) *Limit {
	var worst failKind
	for k := range t.failed {
		if t.failed[k] > t.failed[worst] {
			worst = failKind(k)
		}
	}
	if t.failed[worst] == 0 && t.accepted >= t.clientEstablished {
		return &Limit{Kind: "unverified", At: t.clientEstablished, Detail: "connections were held but not all verified"}
	}
	if t.accepted < t.clientEstablished {
		return &Limit{Kind: "accept_queue", At: t.accepted,
			Detail: fmt.Sprintf("%d handshakes completed that no server worker accepted within %s", t.clientEstablished-t.accepted, r.cfg.Timeout)}
	}
	return &Limit{Kind: worst.String(), At: t.clientEstablished,
		Detail: fmt.Sprintf("%d connections failed with %s", t.failed[worst], worst)}
}

// cleanup ends every worker and closes the listener; it runs on every exit.
func (r *Runner) cleanup() {
	r.mu.Lock()
	for _, p := range r.procs {
		p.expectExit = true
	}
	r.mu.Unlock()
	r.send("", cmdExit)
	deadline := time.After(5 * time.Second)
	for _, p := range r.procs {
		select {
		case <-p.exited:
		case <-deadline:
			_ = unix.Kill(p.pid, unix.SIGKILL)
			<-p.exited
		}
		p.ctl.Close()
	}
	if r.listener != nil {
		r.listener.Close()
		r.listener = nil
	}
	if r.swap != nil {
		if err := r.swap.remove(); err == nil {
			os.Remove(filepath.Join(r.cfg.OutDir, SwapFile))
		} else {
			fmt.Fprintf(r.cfg.Log, "warning: %v; c10mprobe restore %s removes it\n", err, r.cfg.OutDir)
		}
		r.swap = nil
	}
	if r.memcg != nil {
		if err := r.memcg.remove(); err == nil {
			os.Remove(filepath.Join(r.cfg.OutDir, MemcgFile))
		} else {
			fmt.Fprintf(r.cfg.Log, "warning: %v; c10mprobe restore %s removes it\n", err, r.cfg.OutDir)
		}
	}
}

// MemcgFile in the run directory names the run's cgroup until it is removed,
// so that `c10mprobe restore` can remove it after a SIGKILL.
const MemcgFile = "memcg.path"

func (r *Runner) makeMemcg(res *Result) error {
	name := fmt.Sprintf("c10mprobe-%d-%d", os.Getpid(), time.Now().UnixNano())
	parent, _, err := findMemcgParent()
	if err != nil {
		return err
	}
	// Written before the cgroup exists, like the sysctl journal.
	if err := os.WriteFile(filepath.Join(r.cfg.OutDir, MemcgFile), []byte(filepath.Join(parent, name)+"\n"), 0o644); err != nil {
		return err
	}
	m, err := newMemcg(name, r.cfg.MemLimit)
	if err != nil {
		return err
	}
	r.memcg = m
	version := 1
	if m.v2 {
		version = 2
	}
	res.Memcap = &MemcapResult{LimitBytes: r.cfg.MemLimit, Cgroup: m.dir, Version: version}
	fmt.Fprintf(r.cfg.Log, "memory cgroup %s (v%d) capped at %s\n", m.dir, version, units.Bytes(r.cfg.MemLimit))
	return nil
}

// memcapStop is the share of the cap at which opening stops: the exchange
// and the close still need a little memory inside the cgroup.
const memcapStop = 0.97

// The cap is polled often, and usage projected a little ahead: a stop takes
// a poll and a control message to reach the workers.
const (
	memcapPoll = 10 * time.Millisecond
	memcapLead = 30 * time.Millisecond
)

// memcapStall is how long progress may stop near the cap before the run
// calls it: at its cap the kernel reclaims and stalls instead of failing
// (no failcnt, no OOM kill, connects slow to a crawl).
const memcapStall = 2 * time.Second

// watchMemcap checks the cap every memcapPoll until done.
func (r *Runner) watchMemcap(done <-chan struct{}) {
	t := time.NewTicker(memcapPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			r.checkMemcap(r.totals().clientEstablished)
		}
	}
}

// checkMemcap stops opening when the cgroup is at its cap and progress has
// stalled, or when the cgroup's OOM killer has acted.
func (r *Runner) checkMemcap(established uint64) {
	m := r.memcg
	use := m.usage()
	now := time.Now()
	r.memPeak = max(r.memPeak, use)
	if r.memLastMove.IsZero() {
		r.memLastMove = now
	}
	// Where usage will be by the time a stop reaches every worker: at
	// 30,000 connections a second, 100 ms is 16 MB, 6 % of a 256 MiB cap,
	// and the cgroup's OOM killer acts at 100 %.
	// Workers report every 100 ms, so the count moves in steps: the rate is
	// taken over windows of at least 250 ms.
	if dt := now.Sub(r.memRateAt); dt >= 250*time.Millisecond {
		if !r.memRateAt.IsZero() {
			r.memRate = float64(established-min(established, r.memRateEst)) / dt.Seconds()
		}
		r.memRateAt, r.memRateEst = now, established
	}
	projected := float64(use) + r.cfg.MemPerConn*(r.memRate*memcapLead.Seconds()+float64(r.cfg.Inflight))
	if established > r.memLastEst {
		r.memLastEst, r.memLastMove = established, now
	}
	hits, ooms := m.events()
	switch {
	case ooms > 0:
		r.stop("memcap", fmt.Sprintf("the memory cgroup's OOM killer acted (%d kills) at its cap of %s", ooms, units.Bytes(m.limit)))
	case projected >= memcapStop*float64(m.limit):
		// Before the cgroup's OOM killer takes workers and what they hold.
		r.stop("memcap", fmt.Sprintf("the memory cgroup reached %s of its %s cap (%d limit hits)", units.Bytes(use), units.Bytes(m.limit), hits))
	case float64(use) >= 0.90*float64(m.limit) && time.Since(r.memLastMove) > memcapStall:
		r.stop("memcap", fmt.Sprintf("the memory cgroup is at %s of its %s cap and no connection completed for %s: the kernel is reclaiming instead of failing (%d limit hits)",
			units.Bytes(use), units.Bytes(m.limit), memcapStall, hits))
	}
}

// MemcgUsage is what the run's cgroup holds now (0 without --mem-limit).
// Read at the idle phase, it is the workers' own baseline.
func (r *Runner) MemcgUsage() uint64 {
	if r.memcg == nil {
		return 0
	}
	return r.memcg.usage()
}

// MemcapStop is the share of the cap at which the run stops opening.
const MemcapStop = memcapStop

// RemoveCgroup removes the cgroup a killed run left, if any.
func RemoveCgroup(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, MemcgFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	path := strings.TrimSpace(string(data))
	if !strings.Contains(filepath.Base(path), "c10mprobe-") {
		return fmt.Errorf("%s names %q, not a c10mprobe cgroup", MemcgFile, path)
	}
	if err := (&memcg{dir: path}).remove(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, MemcgFile))
}

func errorsJoin(a, b error) error {
	if a == nil {
		return b
	}
	return fmt.Errorf("%w; %w", a, b)
}
