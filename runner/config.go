package runner

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/phase"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// Config is everything `c10mprobe run` was asked to do.
type Config struct {
	Conns      int
	Listen     netip.AddrPort
	Sources    []netip.Addr // nil: as many of 127.0.0.0/8 as the port range needs
	Inflight   int          // most connects pending at once, over all client workers
	Rate       float64      // most new connections per second over all workers; 0 is no limit
	Hold       time.Duration
	Timeout    time.Duration // a phase that makes no progress for this long ends
	Reserve    uint64        // stop opening when spare memory falls below this; 0 for DefaultReserve
	WorkerFDs  uint64        // RLIMIT_NOFILE per worker; 0 for the hard limit
	MaxWorkers int           // per side; 0 for as many as the fd budget needs
	Force      bool          // run even when the preflight says memory cannot hold half of Conns
	OutDir     string

	// Target is a server the user brings, on an address of this host: no
	// built-in server, only client workers dialing it. Zero for the built-in
	// server on Listen.
	Target   netip.AddrPort
	Exchange Exchange // what each connection does once open; "" is the mode's default

	// Family is the sockets' address family: inet, or inet6 with
	// IPv4-mapped addresses (::ffff:127.x.y.z), as a JVM on a dual-stack
	// host makes them: the kernel then allocates TCPv6 socks.
	Family Family
	// PortChoice is who picks each client socket's port: the kernel at
	// connect() (IP_BIND_ADDRESS_NO_PORT), or the runner, binding each
	// socket to a planned (source, port) so connect() checks one 4-tuple.
	PortChoice PortChoice
	// Mode is which ends of the connections this host holds: both (run),
	// the server alone (serve: dialers elsewhere), or the clients alone
	// (dial: the server at Target, elsewhere).
	Mode Mode
	// InNetns says this process runs in a private network namespace made
	// for the run (--netns): its run directory already holds the
	// namespace's journal (rundir.NetnsJournal).
	InNetns bool
	// Changes are more host changes, made after the run's own and undone
	// before them, on every exit: a caller's own, such as a test's.
	Changes []host.Change

	SysctlSettings
	Memory
	Data
	Brought
	Spread
	Hooks
}

// SysctlSettings are the sysctls a run sets beyond its own tuning.
type SysctlSettings struct {
	PortRange [2]int     // ip_local_port_range for the run; zero leaves it
	Sysctls   []KeyValue // more sysctls to set for the run
	NoTune    bool       // leave the accept backlog as it is
}

// Memory is the memory a run is given: each a host change, 0 for none.
type Memory struct {
	MemLimit uint64 // cap the workers' memory cgroup at this
	Swap     uint64 // a swapfile of this size for the run
	// MachineMem makes the host a machine of this much RAM for the run:
	// the rest is reserved as huge pages (vm.nr_hugepages, journaled).
	MachineMem uint64
	// Ballast is a process of this many bytes of anonymous memory, touched
	// at random: the desktop and JVM heap that go to swap.
	Ballast uint64
}

// Data is what a connection carries beyond its numbered message.
type Data struct {
	Payload int  // bytes each side sends after the numbered message
	Unread  bool // leave the peer's payload queued in the receive buffer
}

// Brought is how a server the user brings (Target) is found or started.
type Brought struct {
	ServerPIDs []int  // the target's processes (--server-pid), measured but not stopped
	ServerCmd  string // a shell command that starts the target (--server-cmd), stopped after
}

// Spread is a run spread over hosts (serve and dial).
type Spread struct {
	// Index and Of: a dialer's share of Conns, the Index-th of Of.
	Index, Of int
	// FirstWait is how long serve waits for its first connection; --timeout
	// then ends it once connections stop coming.
	FirstWait time.Duration
}

// Hooks are what the run tells its caller as it goes; each may be nil.
type Hooks struct {
	Log        io.Writer               // preflight table and notes (stderr)
	OnProgress func(Progress)          // about every 250 ms
	OnPhase    func(phase Phase) error // when a phase ends, while its sockets are held
	OnSpawn    func(pid int) error     // for each process of the run, before it opens anything
	OnServerUp func([]Check)           // --server-cmd: its limits, once it listens
	OnBallast  func(pid int)           // --ballast: its process, for the time series
}

// Exchange is what a connection does once open, to count as verified.
type Exchange = worker.Exchange

const (
	ExchangeNumbered = worker.ExchangeNumbered
	ExchangeEcho     = worker.ExchangeEcho
	ExchangeNone     = worker.ExchangeNone
)

// Role is a worker process's part: an end of the connections, or the
// ballast.
type Role = worker.Role

const (
	Client  = worker.Client
	Server  = worker.Server
	Ballast = worker.Ballast
)

// Family is the address family of the run's sockets.
type Family = worker.Family

const (
	FamilyInet  = worker.FamilyInet
	FamilyInet6 = worker.FamilyInet6
)

// Mode is which ends of the connections a run holds on this host.
type Mode string

const (
	ModeRun   Mode = ""      // both ends: c10mprobe run
	ModeServe Mode = "serve" // the built-in server alone: c10mprobe serve
	ModeDial  Mode = "dial"  // client workers alone, to a server elsewhere: c10mprobe dial
)

// External says the run dials a server the user brings to this host.
func (c Config) External() bool { return c.Target.IsValid() && c.Mode != ModeDial }

// clientOnly says this host runs client workers and no server workers.
func (c Config) clientOnly() bool { return c.Target.IsValid() }

// KeyValue is one sysctl assignment.
type KeyValue = host.Sysctl

// Phase names a stage of a run.
type Phase = phase.Phase

const (
	PhaseIdle     = phase.Idle
	PhaseConnect  = phase.Connect
	PhaseExchange = phase.Exchange
	PhaseHold     = phase.Hold
	PhaseClose    = phase.Close
)

// Progress is the state of a run, for display and sampling.
type Progress struct {
	Phase        Phase
	Requested    int
	Established  uint64
	Accepted     uint64
	Verified     uint64
	Failed       uint64
	Rate         float64 // connections per second over the last interval
	Elapsed      time.Duration
	ETA          time.Duration // 0 when unknown; in the hold, what is left of it
	MemAvailable uint64
}

// BadInputError is an input that cannot run; the command exits 2 on it.
type BadInputError struct{ msg string }

func (e *BadInputError) Error() string { return e.msg }

func badInput(format string, a ...any) error {
	return &BadInputError{msg: fmt.Sprintf(format, a...)}
}

// IsBadInput reports whether err is a BadInputError.
func IsBadInput(err error) bool {
	var b *BadInputError
	return errors.As(err, &b)
}

// Tuning is what a run sets on the host.
type Tuning struct {
	Backlog      int64 // somaxconn and tcp_max_syn_backlog wanted
	InputBacklog int64 // net.core.netdev_max_backlog wanted; 0 leaves it
	PortLo       int
	PortHi       int
}

// DefaultReserve is the memory a run keeps spare when --reserve is not
// given: 1 GiB, or 5 % of a larger machine's.
func DefaultReserve(memTotal uint64) uint64 { return max(1<<30, memTotal/20) }

// PortChoice is who picks the client sockets' ports.
type PortChoice string

const (
	PortsByKernel PortChoice = "kernel"
	PortsByRunner PortChoice = "runner"
)

// DefaultPortChoice is chosen by measurement (docs/measurements.md, "Rate").
const DefaultPortChoice = PortsByRunner
