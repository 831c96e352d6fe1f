package runner

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/runner/host"

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
			return storable(d)
		}
		if !os.IsNotExist(err) {
			return err
		}
		if d == filepath.Dir(d) {
			return err
		}
	}
}

// storable refuses the kernel's own filesystems (root may "write" to /proc
// and /sys, but cannot make files there) and read-only mounts.
func storable(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	switch fs.Type {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC,
		unix.TRACEFS_MAGIC, unix.DEBUGFS_MAGIC, unix.BPF_FS_MAGIC, unix.SECURITYFS_MAGIC:
		return fmt.Errorf("%s is on a kernel pseudo-filesystem", dir)
	}
	if fs.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("%s is on a read-only filesystem", dir)
	}
	return nil
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

// validate checks what can be checked of a configuration on its own; each
// failure is one sentence naming the flag, the value and what is accepted.
func validate(cfg Config) error {
	if cfg.Conns <= 0 {
		return badInput("--conns must be a positive number of connections, got %d", cfg.Conns)
	}
	if err := validateTarget(cfg); err != nil {
		return err
	}
	if !cfg.clientOnly() {
		if !cfg.Listen.Addr().Is4() {
			return badInput("--listen must be an IPv4 address:port, got %s", cfg.Listen)
		}
		if cfg.Listen.Port() == 0 {
			return badInput("--listen needs a port other than 0, got %s", cfg.Listen)
		}
		if err := listenable(cfg.Listen); err != nil {
			return err
		}
	}
	seen := map[netip.Addr]bool{}
	for _, s := range cfg.Sources {
		switch {
		case !s.Is4():
			return badInput("--src takes IPv4 addresses, got %s", s)
		case s.IsUnspecified() || s.IsMulticast() || s == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return badInput("--src %s cannot be a connection's source address; give addresses of this host such as 127.0.1.1", s)
		case seen[s]:
			return badInput("--src %s is given twice (its ports would be counted twice)", s)
		}
		seen[s] = true
		if err := bindable(s); err != nil {
			return badInput("--src %s is not an address of this host (bind: %v); add it (ip addr add %s dev lo) or leave it out", s, err, s)
		}
	}
	switch {
	case cfg.Inflight <= 0:
		return badInput("--inflight must be positive, got %d", cfg.Inflight)
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return badInput("--rate must be a number of connections per second, 0 for no limit, got %g", cfg.Rate)
	case cfg.Payload < 0 || cfg.Payload > 64<<20:
		return badInput("--payload must be between 0 and 64MiB, got %d bytes", cfg.Payload)
	case cfg.MemLimit > 0 && cfg.MemLimit < 32<<20:
		return badInput("--mem-limit must be at least 32MiB (the workers alone need that), got %d bytes", cfg.MemLimit)
	case cfg.Unread && cfg.Payload == 0:
		return badInput("--unread needs a --payload to leave unread")
	case cfg.Timeout <= 0:
		return badInput("--timeout must be positive, got %s", cfg.Timeout)
	case cfg.Hold < 0:
		return badInput("--hold must not be negative, got %s", cfg.Hold)
	case cfg.MaxWorkers < 0:
		return badInput("--max-workers must be positive, or 0 for as many as needed, got %d", cfg.MaxWorkers)
	case cfg.Family != "" && cfg.Family != FamilyInet && cfg.Family != FamilyInet6:
		return badInput("--family takes inet or inet6, got %q", cfg.Family)
	case cfg.Family == FamilyInet6 && cfg.Mode != ModeRun:
		return badInput("--family inet6 is for run (both ends on this host)")
	case cfg.PortChoice != "" && cfg.PortChoice != PortsByKernel && cfg.PortChoice != PortsByRunner:
		return badInput("--port-choice takes kernel or runner, got %q", cfg.PortChoice)
	}
	return nil
}

// listenable says whether the run's listener can bind its address: one of
// this host's, and not a port another listener holds.
func listenable(ap netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	// As the run's listener binds: TIME_WAIT leftovers do not stop it.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	switch err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err {
	case nil:
		return nil
	case unix.EADDRINUSE:
		return badInput("--listen %s: the port is in use by another listener (ss -ltnp 'sport = :%d'); choose another port", ap, ap.Port())
	case unix.EADDRNOTAVAIL:
		return badInput("--listen %s is not an address of this host; give one of its own, 127.0.0.1 or 0.0.0.0", ap)
	default:
		return badInput("--listen %s cannot be bound: %v", ap, err)
	}
}

// Prepare reads the host and plans the run. It changes nothing on the host,
// so every bad input is reported before anything is touched.
func Prepare(cfg Config) (*Runner, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	h, err := ReadHost()
	if err != nil {
		return nil, err
	}
	cfg, total, err := resolve(cfg, h)
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, host: h, notify: make(chan struct{}, 1), connectTo: cfg.Listen, total: total}
	if cfg.clientOnly() {
		r.connectTo = cfg.Target
		if cfg.External() {
			r.target = &target{addr: cfg.Target, roots: cfg.ServerPIDs}
		}
	} else if cfg.Listen.Addr().IsUnspecified() {
		r.connectTo = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), cfg.Listen.Port())
	}
	if err := r.tune(); err != nil {
		return nil, err
	}
	nofile, err := workerNoFile(cfg, r.host)
	if err != nil {
		return nil, err
	}
	if err := r.makePlan(nofile); err != nil {
		return nil, err
	}
	if err := r.checkRunDir(); err != nil {
		return nil, err
	}
	// What the run will change on the host, each checked before any is made.
	r.planChanges()
	if err := host.CheckAll(r.changes); err != nil {
		return nil, badInput("%v", err)
	}
	if err := r.checkMemory(); err != nil {
		return nil, err
	}
	return r, nil
}

// resolve fills in what the run was not told: the reserve, the family, who
// picks ports, the exchange; and for a dialer its share of the total and,
// off loopback, its source address.
func resolve(cfg Config, h Host) (Config, int, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Reserve == 0 {
		// Of the smaller machine, when the run makes one.
		cfg.Reserve = DefaultReserve(h.Mem.MemTotal)
		if cfg.MachineMem > 0 {
			cfg.Reserve = DefaultReserve(cfg.MachineMem)
		}
	}
	if cfg.Family == "" {
		cfg.Family = FamilyInet
	}
	if cfg.PortChoice == "" {
		cfg.PortChoice = DefaultPortChoice
	}
	if cfg.FirstWait == 0 {
		cfg.FirstWait = cfg.Timeout
	}
	switch {
	case cfg.Exchange != "":
	case cfg.External():
		// Any server can be connected to and held; echo needs an echo server.
		cfg.Exchange = ExchangeNone
	case cfg.Mode == ModeDial && cfg.Of == 0:
		cfg.Index, cfg.Of = 0, 1
		fallthrough
	default:
		cfg.Exchange = ExchangeNumbered
	}
	total := cfg.Conns
	if cfg.Mode == ModeDial {
		// This dialer's share; the numbers come from the server.
		cfg.Conns = Quota(total, cfg.Of, cfg.Index)
		if len(cfg.Sources) == 0 && !cfg.Target.Addr().IsLoopback() {
			// Off loopback, 127.x sources cannot reach the server: the
			// route's own address, whose port range is then the limit.
			src, err := routeSource(cfg.Target)
			if err != nil {
				return cfg, 0, badInput("--target %s: %v", cfg.Target, err)
			}
			cfg.Sources = []netip.Addr{src}
		}
	}
	return cfg, total, nil
}

// tune decides the sysctls the run sets and the accept backlog, and refuses
// them without root. --port-range is a sysctl like any other; the plan, the
// preflight and the analysis all see the values in force during the run.
func (r *Runner) tune() error {
	cfg := r.cfg
	r.sysctls = cfg.Sysctls
	if cfg.PortRange != [2]int{} {
		r.sysctls = append([]KeyValue{{Key: "net.ipv4.ip_local_port_range", Value: fmt.Sprintf("%d %d", cfg.PortRange[0], cfg.PortRange[1])}}, r.sysctls...)
	}
	if err := (&host.Sysctls{Set: r.sysctls}).Check(); err != nil {
		return badInput("%v", err)
	}
	for _, kv := range r.sysctls {
		if kv.Key == "net.ipv4.ip_local_port_range" {
			if err := checkPortRange(kv.Value); err != nil {
				return err
			}
		}
		r.host.apply(kv.Key, kv.Value)
	}
	h := r.host
	r.tuning = Tuning{Backlog: max(h.Somaxconn, h.SynBacklog), PortLo: h.PortLo, PortHi: h.PortHi}
	// The accept queue absorbs connects in flight plus whatever the server
	// workers have not yet accepted; 65,535 is the historical u16 cap of
	// sk_max_ack_backlog and plenty with pacing.
	if want := int64(min(65535, max(cfg.Conns, 4*cfg.Inflight))); want > r.tuning.Backlog {
		r.tuning.Backlog = want
	}
	// Every packet between two ends on this host (loopback, veth) waits
	// in the sending CPU's input queue for NET_RX to take it; past
	// netdev_max_backlog (1,000 by default) it is dropped and TCP resends
	// it after a timeout. Before 6.5, a CPU whose softirq work had gone to
	// ksoftirqd left it there while the workers kept the CPU ("softirq:
	// Let ksoftirqd do its job", reverted by d15121be7485): with a worker
	// a CPU, Debian's 6.1 dropped 288,428 packets in a 100k run and timed
	// out 2,184 in the exchange (docs/measurements.md, "Workers a CPU
	// under TCG"). The queue holds what is in flight: at most a message
	// and its answer a connection.
	// A dialer leaves it to the server's side (serve, or a host of its
	// own): it is host-wide, and two runs that both set it would restore
	// each other's values.
	if want := int64(min(2*cfg.Conns, 1<<20)); cfg.Mode != ModeDial && h.InputBacklog > 0 && want > h.InputBacklog {
		r.tuning.InputBacklog = want
	}
	needsRoot := len(r.sysctls) > 0 || cfg.MemLimit > 0 || cfg.Swap > 0 || cfg.MachineMem > 0
	if !cfg.NoTune && cfg.Mode != ModeDial && (h.Somaxconn < r.tuning.Backlog || h.SynBacklog < r.tuning.Backlog) {
		needsRoot = true
	}
	if needsRoot && !h.Root {
		return badInput("this run changes sysctls (accept backlog to %d, --port-range or --sysctl), which needs root: rerun with sudo, or pass --no-tune", r.tuning.Backlog)
	}
	return nil
}

// workerNoFile is each worker's RLIMIT_NOFILE: --worker-fds, else the hard
// limit, raised to fs.nr_open where it can be for fewer, larger workers.
func workerNoFile(cfg Config, h Host) (uint64, error) {
	nofile := h.NoFileHard
	if cfg.WorkerFDs == 0 {
		if h.CanRaiseNoFile && uint64(h.NrOpen) > nofile {
			nofile = uint64(h.NrOpen)
		}
		return nofile, nil
	}
	nofile = cfg.WorkerFDs
	if nofile > h.NoFileHard && !h.CanRaiseNoFile {
		return 0, badInput("--worker-fds %d is above the hard RLIMIT_NOFILE of %d, and raising it needs CAP_SYS_RESOURCE", nofile, h.NoFileHard)
	}
	if nofile <= fdReserve {
		return 0, badInput("--worker-fds must be above %d (a worker keeps that many for itself), got %d", fdReserve, nofile)
	}
	if nofile > uint64(h.NrOpen) {
		return 0, badInput("--worker-fds %d is above fs.nr_open (%d), the most RLIMIT_NOFILE can be", nofile, h.NrOpen)
	}
	return nofile, nil
}

// makePlan plans the workers and source addresses around the ports other
// programs hold, and refuses workers the kernel could not start.
func (r *Runner) makePlan(nofile uint64) error {
	cfg := r.cfg
	held, err := host.HeldPorts(r.tuning.PortLo, r.tuning.PortHi)
	if err != nil {
		return fmt.Errorf("counting the ports other programs hold: %w", err)
	}
	lo, hi := r.tuning.PortLo, r.tuning.PortHi
	r.plan, err = MakePlan(PlanInput{
		Conns: cfg.Conns, NoFile: nofile, MaxWorkers: cfg.MaxWorkers, CPUs: r.host.CPUs,
		Sources: cfg.Sources, PortLo: lo, PortHi: hi, PortsHeld: held.Count(lo, hi),
		ByRunner: cfg.PortChoice == PortsByRunner, PortsHeldSlice: held.Count(runnerSliceLo(lo, hi), hi),
		CapConns: capConns(cfg.MemLimit, r.capCharge()),
	})
	if err != nil {
		return badInput("%v", err)
	}
	switch {
	case cfg.clientOnly():
		r.plan.ServerWorkers = 0 // the server is the user's, or on another host
	case cfg.Mode == ModeServe:
		// The clients are on other hosts, with their own ports.
		r.plan.ClientWorkers, r.plan.Sources, r.plan.AutoSources = 0, nil, false
	}
	if cfg.Mode != ModeRun {
		r.plan.EndsHere = 1
	}
	r.plan.Family = cfg.Family
	// Workers the kernel could not start are refused now, not half-way.
	if c := processesCheck(r.host, r.plan); !c.OK {
		return badInput("--conns %d plans %d + %d workers of ≈ %d threads each, and %s already run: more than kernel.pid_max (%s) and kernel.threads-max (%s) allow",
			cfg.Conns, r.plan.ClientWorkers, r.plan.ServerWorkers, threadsPerWorker, units.Count(r.host.Tasks), units.Count(r.host.PidMax), units.Count(r.host.ThreadsMax))
	}
	return nil
}

// capCharge is the least a connection is charged to a memory cap: the
// model's objects (slabmodel.MemcgCharge), before any buffer.
func (r *Runner) capCharge() float64 {
	if r.cfg.MemLimit == 0 {
		return 0
	}
	charge, _ := slabmodel.MemcgCharge(r.host.SlabObjSize)
	return charge
}

// checkRunDir refuses a run directory that holds another run's files, or
// cannot be made, and a reserve the host does not have.
func (r *Runner) checkRunDir() error {
	cfg, h := r.cfg, r.host
	// A run directory holds one run: files a second run does not write
	// (its probes' stacks, a swap marker) would pass for its own.
	if entries, err := os.ReadDir(cfg.OutDir); err == nil && !onlyNetnsFiles(entries, cfg.InNetns) {
		return badInput("--out %s already holds files (another run's?); give a new directory", cfg.OutDir)
	}
	if err := creatable(cfg.OutDir); err != nil {
		return badInput("--out %s cannot be created: %v", cfg.OutDir, err)
	}
	if cfg.Reserve >= h.Mem.MemTotal {
		return badInput("--reserve %s is not below this host's memory (%s)", units.Bytes(cfg.Reserve), units.Bytes(h.Mem.MemTotal))
	}
	return nil
}

// checkMemory refuses a run far past what memory holds, which would only
// meet the reserve: with the estimate, unless asked to go anyway (--force).
// On a smaller machine the run goes into swap on purpose; its guard stops
// it.
func (r *Runner) checkMemory() error {
	cfg, h := r.cfg, r.host
	per, _ := h.KernelBytesPerConn(cfg.Family)
	if per == 0 || cfg.Force || cfg.MachineMem > 0 {
		return nil
	}
	per = per * uint64(r.plan.EndsHere) / 2
	room := int64(h.Mem.MemAvailable) - int64(cfg.Reserve)
	if need := uint64(cfg.Conns) * per; room <= 0 || need > 2*uint64(room) {
		return badInput("--conns %d needs ≈ %s of kernel memory at %s a connection, more than twice the %s this host has spare above the reserve (it would hold ≈ %s); lower --conns, or pass --force to run into the reserve",
			cfg.Conns, units.Bytes(need), units.Bytes(per), units.Bytes(uint64(max(0, room))), units.Approx(uint64(max(0, room))/per))
	}
	return nil
}

// onlyNetnsFiles says a run directory holds nothing, or, in a --netns run,
// only what the process that made the namespace wrote: its journal and its
// line in the list of changes.
func onlyNetnsFiles(entries []os.DirEntry, inNetns bool) bool {
	for _, e := range entries {
		if !inNetns || (e.Name() != rundir.NetnsJournal && e.Name() != rundir.Changes) {
			return false
		}
	}
	return true
}

// planChanges lists, in the order they are made, what the run changes on
// the host: its sysctls, a swapfile, a memory cgroup, a smaller machine's
// huge pages, the ballast.
func (r *Runner) planChanges() {
	cfg := r.cfg
	r.journal = sysctl.NewJournal(filepath.Join(cfg.OutDir, rundir.Journal))
	r.changes = []host.Change{&host.Sysctls{Journal: r.journal, Set: r.tuningSysctls(), Log: cfg.Log}}
	if cfg.Swap > 0 {
		r.swap = &host.Swap{Dir: cfg.OutDir, Size: cfg.Swap}
		r.changes = append(r.changes, r.swap)
	}
	if cfg.MemLimit > 0 {
		r.memcap = host.NewMemcap(r.host.SlabObjSize, cfg.Inflight)
		r.memcap.Dir, r.memcap.Limit, r.memcap.Log = cfg.OutDir, cfg.MemLimit, cfg.Log
		r.changes = append(r.changes, r.memcap)
	}
	if cfg.MachineMem > 0 {
		r.machine = &host.Machine{Size: cfg.MachineMem, Ballast: cfg.Ballast, Reserve: cfg.Reserve, Journal: r.journal, Log: cfg.Log, Pressure: &r.pressure}
		r.changes = append(r.changes, r.machine)
	}
	if cfg.Ballast > 0 {
		r.ballast = &ballast{bytes: cfg.Ballast, inMachine: cfg.MachineMem > 0, log: cfg.Log, onStart: cfg.OnBallast}
		r.changes = append(r.changes, r.ballast)
	}
	r.changes = append(r.changes, cfg.Changes...)
}

// tuningSysctls are the sysctls the run sets: the accept backlog raised
// where it is short (unless --no-tune, or the run sets it itself; a dialer
// listens on nothing), then --port-range and --sysctl.
func (r *Runner) tuningSysctls() []host.Sysctl {
	var set []host.Sysctl
	mine := map[string]bool{}
	for _, kv := range r.sysctls {
		mine[kv.Key] = true
	}
	if !r.cfg.NoTune && r.cfg.Mode != ModeDial {
		want := fmt.Sprint(r.tuning.Backlog)
		if r.host.Somaxconn < r.tuning.Backlog && !mine["net.core.somaxconn"] {
			set = append(set, host.Sysctl{Key: "net.core.somaxconn", Value: want})
		}
		if r.host.SynBacklog < r.tuning.Backlog && !mine["net.ipv4.tcp_max_syn_backlog"] {
			set = append(set, host.Sysctl{Key: "net.ipv4.tcp_max_syn_backlog", Value: want})
		}
	}
	// Without root a run leaves it, as the preflight says: it is not what
	// the run measures.
	if !r.cfg.NoTune && r.host.Root && r.tuning.InputBacklog > r.host.InputBacklog && !mine["net.core.netdev_max_backlog"] {
		set = append(set, host.Sysctl{Key: "net.core.netdev_max_backlog", Value: fmt.Sprint(r.tuning.InputBacklog)})
	}
	return append(set, r.sysctls...)
}

// checkPortRange refuses an ip_local_port_range the kernel would: LO above
// HI, or LO below net.ipv4.ip_unprivileged_port_start
// (ipv4_local_port_range() in net/ipv4/sysctl_net_ipv4.c).
func checkPortRange(value string) error {
	var lo, hi int
	if _, err := fmt.Sscanf(value, "%d %d", &lo, &hi); err != nil || lo < 1 || hi > 65535 || lo > hi {
		return badInput("the port range %q must be LO HI within 1-65535, LO ≤ HI", value)
	}
	start, err := readSysctlInt("net.ipv4.ip_unprivileged_port_start")
	if err == nil && int64(lo) < start {
		return badInput("the port range %d-%d starts below net.ipv4.ip_unprivileged_port_start (%d), which the kernel refuses; start at %d or above", lo, hi, start, start)
	}
	return nil
}
