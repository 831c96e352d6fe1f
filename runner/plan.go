package runner

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// fdReserve is what a worker keeps for itself below RLIMIT_NOFILE: stdio,
// the control socket, the listener, its epoll fd and the Go runtime's own
// (its netpoller's epoll and eventfd).
const fdReserve = 16

// autoFill is the share of the port range that automatic source addresses
// fill: connect()'s port search (__inet_hash_connect) walks the range from a
// hashed offset, so a nearly full range makes every connect slower.
const autoFill = 0.5

// runnerSlice: with --port-choice runner, automatic sources bind ports in
// the top 1/runnerSlice of the range only. A port the run binds is one no
// other program's connect() gets, from any address, while the run holds it
// (bind buckets are per port: __inet_hash_connect skips a port whose bucket
// bind() made; measured in TestLongPortScanIsNamedAndRunnerPortsEndIt), so
// the run keeps most of the range to the host and spreads over more
// addresses instead. Filled to runnerFill of the slice: a port someone
// else holds there is skipped at bind().
const (
	runnerSlice = 8
	runnerFill  = 0.9
)

// minFreeShare: the plan takes at least 1/minFreeShare of the range as free
// on every address, whatever other programs seem to hold.
const minFreeShare = 8

// Plan is how a run spreads N connections over processes and addresses.
type Plan struct {
	Conns          int          `json:"conns"`
	NoFile         uint64       `json:"nofile_per_worker"`
	ConnsPerWorker int          `json:"conns_per_worker"`
	ClientWorkers  int          `json:"client_workers"`
	ServerWorkers  int          `json:"server_workers"`
	Sources        []netip.Addr `json:"-"`
	PortLo         int          `json:"port_lo"` // ip_local_port_range's first port
	PortsPerSource int          `json:"ports_per_source"`
	PortsHeld      int          `json:"ports_held_by_others"` // of the range, by other programs' sockets
	PortsFree      int          `json:"ports_free_per_source"`
	AutoSources    bool         `json:"auto_sources"`
	MaxWorkers     int          `json:"max_workers"` // the cap asked for; 0 for none
	// WorkersBy says which need set the workers a side: "fds" (RLIMIT_NOFILE
	// over the connections), "mem_limit" (RLIMIT_NOFILE over the most a
	// --mem-limit can hold), "cpus" (one a CPU the run may use), "share"
	// (at most maxWorkerShare connections each) or "max_workers".
	WorkersBy string `json:"workers_by"`
	// CapConns is the most connections a --mem-limit can hold (0 without
	// one): the workers are sized for it, not for --conns.
	CapConns int `json:"mem_limit_conns,omitempty"`
	// EndsHere is the sockets of each connection on this host: 2, or 1
	// for serve and dial, whose other ends are on other hosts.
	EndsHere int `json:"ends_here"`
	// Family is the sockets' address family, whose sock cache differs.
	Family Family `json:"family"`
	// RunnerPorts: the runner binds each client socket to a port of
	// PortLo..PortLo+PortsPerSource−1 (--port-choice runner); with
	// automatic sources that is the range's top slice.
	RunnerPorts bool `json:"runner_ports,omitempty"`
}

// PlanInput is what a plan depends on.
type PlanInput struct {
	Conns      int
	NoFile     uint64       // RLIMIT_NOFILE each worker gets
	MaxWorkers int          // per side; 0 for as many as the needs below
	CPUs       int          // in the run's affinity mask; 0 leaves CPUs out
	Sources    []netip.Addr // explicit; nil for automatic
	PortLo     int
	PortHi     int
	PortsHeld  int  // ports of the range other programs hold (heldPorts)
	ByRunner   bool // --port-choice runner
	// PortsHeldSlice: the ports of the runner's slice (runnerSliceLo) a
	// socket holds: leftovers of earlier runs gather there, and one without
	// SO_REUSEADDR is one the runner cannot bind past.
	PortsHeldSlice int
	// CapConns bounds the connections a --mem-limit can hold (capConns);
	// 0 for no cap.
	CapConns int
}

// capSlack is how far past the model's bound a memory cap's workers are
// sized: the bound leaves out the workers' own memory and the buffers, so
// the cap stops the run well before; slack covers a kernel that charges
// less than the model prices.
const capSlack = 1.5

// capConns is the most connections a memory cap of limit bytes can hold
// at charge bytes each, with slack: each worker a cap need not fill costs
// it a Go runtime's pages and fixed kernel objects (14 + 14 workers for a
// 256 MiB cap that held 12k connections on 6.12, cgroup v2, moved its
// measured charge by a fifth).
func capConns(limit uint64, charge float64) int {
	if limit == 0 || charge <= 0 {
		return 0
	}
	return int(capSlack * float64(limit) / charge)
}

// runnerSliceLo is the first port of the slice of lo..hi the runner binds
// on automatic sources: the top 1/runnerSlice, 256 ports at least.
func runnerSliceLo(lo, hi int) int {
	n := hi - lo + 1
	return hi - min(n, max(256, n/runnerSlice)) + 1
}

// MakePlan shards the connections over worker processes, each within its fd
// budget, and picks source addresses so the port range is not the limit.
func MakePlan(in PlanInput) (Plan, error) {
	if in.NoFile <= fdReserve {
		return Plan{}, fmt.Errorf("a worker needs more than %d file descriptors, has %d", fdReserve, in.NoFile)
	}
	p := Plan{Conns: in.Conns, NoFile: in.NoFile, PortLo: in.PortLo, PortsPerSource: in.PortHi - in.PortLo + 1}
	if p.PortsPerSource < 1 {
		return Plan{}, fmt.Errorf("empty port range %d-%d", in.PortLo, in.PortHi)
	}
	// The held count is an upper bound (heldPorts): a host busy with plain
	// connect()s would plan far too many addresses without a floor.
	p.PortsHeld = min(in.PortsHeld, p.PortsPerSource-p.PortsPerSource/minFreeShare)
	p.PortsFree = p.PortsPerSource - p.PortsHeld
	p.ConnsPerWorker = int(in.NoFile - fdReserve)
	workers := p.workers(in)
	p.ClientWorkers, p.ServerWorkers = workers, workers
	p.EndsHere = 2

	p.Sources = in.Sources
	p.RunnerPorts = in.ByRunner
	fill := autoFill
	if in.ByRunner && len(p.Sources) == 0 {
		lo := runnerSliceLo(in.PortLo, in.PortHi)
		slice := in.PortHi - lo + 1
		held := min(in.PortsHeldSlice, slice-slice/minFreeShare)
		p.PortLo, p.PortsPerSource, p.PortsHeld, p.PortsFree = lo, slice, held, slice-held
		fill = runnerFill
	}
	if len(p.Sources) == 0 {
		p.AutoSources = true
		// Filled to a share of the ports really free: those others hold are
		// skipped on every address.
		n := ceilDiv(in.Conns, max(1, int(float64(p.PortsFree)*fill)))
		var err error
		if p.Sources, err = autoSources(n); err != nil {
			return Plan{}, err
		}
	}
	return p, nil
}

// maxWorkerShare is the most connections a worker holds when more workers
// are free to take them: a worker the OOM killer takes, or that dies, then
// loses a small part of the run, and no one worker's epoll set and fd table
// grow past what the kernel walks quickly.
const maxWorkerShare = 100000

// workers is the workers a side: the most of what the fd limit needs, one
// a CPU the run may use (each worker runs on one: GOMAXPROCS=1), and
// enough that none holds more than maxWorkerShare; never more than the
// connections; capped by --max-workers. It records which need won.
func (p *Plan) workers(in PlanInput) int {
	need := in.Conns
	p.WorkersBy = "fds"
	if in.CapConns > 0 && in.CapConns < need {
		need, p.CapConns, p.WorkersBy = in.CapConns, in.CapConns, "mem_limit"
	}
	workers := ceilDiv(need, p.ConnsPerWorker)
	if in.CPUs > workers {
		workers, p.WorkersBy = in.CPUs, "cpus"
	}
	if share := ceilDiv(need, maxWorkerShare); share > workers {
		workers, p.WorkersBy = share, "share"
	}
	workers = max(1, min(workers, in.Conns))
	if in.MaxWorkers > 0 && in.MaxWorkers < workers {
		workers, p.WorkersBy = in.MaxWorkers, "max_workers"
	}
	p.MaxWorkers = in.MaxWorkers
	return workers
}

// Quota is how many connections worker i of a side of n workers handles.
func Quota(total, n, i int) int {
	q := total / n
	if i < total%n {
		q++
	}
	return q
}

// autoSourceBlock is where automatic sources start, from its first host
// address (127.1.0.1: the probes compute a source's index from it).
var autoSourceBlock = netip.MustParsePrefix("127.1.0.0/16")

// autoSources returns n addresses from 127.1.0.1 upward. All of 127.0.0.0/8
// routes to lo on Linux, so no address needs to be configured.
func autoSources(n int) ([]netip.Addr, error) {
	block := autoSourceBlock.Addr().As4()
	out := make([]netip.Addr, 0, n)
	for a := binary.BigEndian.Uint32(block[:]) + 1; len(out) < n; a++ {
		if a>>24 != 127 {
			return nil, fmt.Errorf("%d source addresses do not fit in 127.0.0.0/8", n)
		}
		if b := a & 0xff; b == 0 || b == 255 {
			continue
		}
		out = append(out, netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}))
	}
	return out, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
