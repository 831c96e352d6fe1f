package analysis

import (
	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/serverlog"
)

// Run is what a run recorded, in analysis' own terms; cmd adapts the run
// directory into it. Nothing here reads a file or the kernel.
type Run struct {
	Requested   int    `json:"requested"`
	Connections uint64 `json:"connections"` // held at the peak
	Verified    uint64 `json:"verified"`
	Server      string `json:"server"`
	// From sock_diag at the peak.
	SocketsOnPort     uint64 `json:"sockets_on_port"`
	DistinctEndpoints uint64 `json:"distinct_client_endpoints"`
	SourceAddresses   int    `json:"source_addresses"`
	AutoSources       bool   `json:"auto_sources"` // the runner picked them, as many as needed

	ClientWorkers int    `json:"client_workers"`
	ServerWorkers int    `json:"server_workers"`
	FDsPerWorker  uint64 `json:"fds_per_worker"` // RLIMIT_NOFILE each worker had
	// SocketsPerWorker is what each worker may hold: its RLIMIT_NOFILE less
	// the fds it keeps for itself.
	SocketsPerWorker uint64 `json:"sockets_per_worker"`
	SocketsPerFD     int    `json:"sockets_per_fd"`  // 1: what the runner's design holds
	MaxHeldPerFDs    uint64 `json:"max_held_by_one"` // the most sockets one worker held

	Idle Memory `json:"idle"` // workers started, nothing opened
	Peak Memory `json:"peak"` // every connection held and verified

	Caches        []Cache `json:"caches"`         // what the probes counted, if they ran
	SocketBuffers uint64  `json:"socket_buffers"` // truesize of queued skbs (rmem_alloc + wmem_queued), sock_diag
	RunnerPss     uint64  `json:"runner_pss"`     // parent + workers at the peak
	// By end: queued skb truesize (sock_diag) and the workers' PSS by role.
	ClientBuffers uint64 `json:"client_buffers"`
	ServerBuffers uint64 `json:"server_buffers"`
	ClientPss     uint64 `json:"client_pss"`
	ServerPss     uint64 `json:"server_pss"`

	Limits   Limits `json:"limits"`
	RunLimit *Bound `json:"run_limit,omitempty"` // the limit the run itself met
	// Memcap is the --mem-limit memory cgroup the workers ran in, if any.
	Memcap *Memcap `json:"memcap,omitempty"`
	// Series is the run's time series, for its rates; EhashEntries the
	// buckets of the kernel's established-connection hash.
	Series       []Sample `json:"series,omitempty"`
	EhashEntries uint64   `json:"ehash_entries,omitempty"`
	// CPU is the run's CPU samples by stack, each tagged with its phase.
	CPU []Stack `json:"cpu,omitempty"`
	// CensusConnections: the slab hooks counted the caches' Live over
	// these first connections only (--kmem census); KmemFlags what the
	// census check against /proc/slabinfo at the peak found off by > 5 %.
	CensusConnections uint64   `json:"census_connections,omitempty"`
	KmemFlags         []string `json:"kmem_flags,omitempty"`
	// Netns: both ends ran in a private network namespace (--netns), whose
	// established hash is its own (EhashEntries).
	Netns bool `json:"netns,omitempty"`
	// PageReporting: this guest gives free pages back to its hypervisor
	// (free page reporting); PageReportedKiB how much since boot, −1 where
	// the kernel does not count it.
	PageReporting   bool  `json:"page_reporting,omitempty"`
	PageReportedKiB int64 `json:"page_reported_kib,omitempty"`
	// Mode is run, serve or dial; EndsHere the sockets of a connection on
	// this host (1 for serve and dial, whose other ends are elsewhere).
	Mode string `json:"mode,omitempty"`
	// Unaccepted: serve's connections that waited in its accept queue,
	// more than --conns brought by the dialers.
	Unaccepted uint64 `json:"unaccepted,omitempty"`
	// GoneInHold: serve's dialers that closed connections during its
	// hold, with how many of how many they held.
	GoneInHold []DialerGone `json:"gone_in_hold,omitempty"`
	EndsHere   int          `json:"ends_here,omitempty"`
	// ConntrackPeak is nf_conntrack_count at the peak.
	ConntrackPeak int64 `json:"conntrack_peak,omitempty"`
	// Machine is a --machine-mem run's smaller machine; nil otherwise.
	Machine *MachineRun `json:"machine,omitempty"`
	// Brought is the server the user brought (--target); nil for the
	// built-in one.
	Brought *BroughtServer `json:"brought,omitempty"`
	// Deaths are the workers that died before they were told to exit.
	Deaths []Death `json:"deaths,omitempty"`
	// Established are the connections connect() completed; Failed the
	// connections that failed, by what the client saw (worker.FailKind's
	// names: eof, reset, exchange_timeout, …).
	Established uint64            `json:"established,omitempty"`
	Failed      map[string]uint64 `json:"failed,omitempty"`
	// ServerExited is how a --server-cmd ended while the run needed it
	// ("exit status 3 during connect"); empty while it ran.
	ServerExited string `json:"server_exited,omitempty"`
	// ServerLog is what a --server-cmd's log says went wrong;
	// ServerLogElsewhere that the server was not started by the run
	// (--server-pid, or found on --target), its log not the run's to read.
	ServerLog          *serverlog.Digest `json:"server_log,omitempty"`
	ServerLogElsewhere bool              `json:"server_log_elsewhere,omitempty"`
}

// Death is a worker that died during the run and what the run held
// before it (the workers' reports) and after (sock_diag, both ends).
type Death struct {
	Worker     string `json:"worker"` // "client worker 3 (pid 1234)"
	How        string `json:"how"`
	OOMKill    bool   `json:"oom_kill"`
	When       string `json:"when"` // "during connect", "as it started"
	HeldBefore uint64 `json:"held_before"`
	HeldAfter  uint64 `json:"held_after"`
	Counted    bool   `json:"counted"` // HeldAfter is sock_diag's, not unknown
}

// BroughtServer is what a server the user brought held, idle and at the
// peak, and its own limits.
type BroughtServer struct {
	Cmd             string `json:"cmd,omitempty"`
	Held            uint64 `json:"held"`          // connections its processes held at the peak
	Established     uint64 `json:"established"`   // connections its clients had opened to it
	NoFile          uint64 `json:"rlimit_nofile"` // of its process with the most fds; 0 unlimited
	NProc           uint64 `json:"rlimit_nproc"`
	FDsIdle         uint64 `json:"fds_idle"`
	FDsPeak         uint64 `json:"fds_peak"`
	ThreadsIdle     uint64 `json:"threads_idle"`
	ThreadsPeak     uint64 `json:"threads_peak"`
	AnonIdle        uint64 `json:"pss_anon_idle"`
	AnonPeak        uint64 `json:"pss_anon_peak"`
	Backlog         uint32 `json:"backlog"`
	AcceptQueuePeak uint32 `json:"accept_queue_peak"`
}

// perHeld is a growth from idle to peak per connection the server held,
// or, where sock_diag saw it hold none at the peak (it had closed them,
// its fds still full), per connection its clients had established:
// never per 1, which made 20,000 fds "bind at 0".
func (b *BroughtServer) perHeld(idle, peak uint64) float64 {
	n := b.Held
	if n == 0 {
		n = b.Established
	}
	if n == 0 {
		return 0
	}
	return (float64(peak) - float64(idle)) / float64(n)
}

// Memcap is what a run's memory cgroup was charged.
type Memcap struct {
	LimitBytes    uint64  `json:"limit_bytes"`
	StopShare     float64 `json:"stop_share"`     // the run stops opening at this share of the cap
	BaselineBytes uint64  `json:"baseline_bytes"` // the workers, up and idle
	PeakBytes     uint64  `json:"peak_bytes"`
	Predicted     uint64  `json:"predicted_connections"` // before the first connection, from the model
}

// Memory is /proc/meminfo (bytes) and /proc/slabinfo at one moment.
type Memory struct {
	MemTotal     uint64          `json:"mem_total"`
	MemFree      uint64          `json:"mem_free"`
	PCPFree      uint64          `json:"pcp_free"` // free pages on per-CPU lists, outside MemFree
	MemAvailable uint64          `json:"mem_available"`
	Buffers      uint64          `json:"buffers"`
	Cached       uint64          `json:"cached"`
	SwapCached   uint64          `json:"swap_cached"`
	Writeback    uint64          `json:"writeback"` // pages being written, swap cache among them
	AnonPages    uint64          `json:"anon_pages"`
	Slab         uint64          `json:"slab"`
	SReclaimable uint64          `json:"sreclaimable"`
	SUnreclaim   uint64          `json:"sunreclaim"`
	PageTables   uint64          `json:"page_tables"`
	KernelStack  uint64          `json:"kernel_stack"`
	Percpu       uint64          `json:"percpu"`
	SwapTotal    uint64          `json:"swap_total"`
	SwapFree     uint64          `json:"swap_free"`
	TCPMemPages  int64           `json:"tcp_mem_pages"` // /proc/net/sockstat: what tcp_mem counts
	Slabinfo     map[string]Slab `json:"slabinfo"`
}

// Slab is one /proc/slabinfo line.
type Slab struct {
	Active  uint64 `json:"active_objs"`
	Num     uint64 `json:"num_objs"`
	ObjSize uint64 `json:"objsize"`
}

// Cache is what the probes counted for one kmem_cache between idle and peak.
type Cache struct {
	Name       string `json:"name"`
	ObjectSize uint64 `json:"object_size"`
	Live       int64  `json:"live"`
	RunAllocs  uint64 `json:"run_allocs"`
	// RunSoftirqAllocs: of RunAllocs, made in a softirq on a run process's
	// time, which the run did not ask for itself.
	RunSoftirqAllocs uint64   `json:"run_softirq_allocs,omitempty"`
	OtherAllocs      uint64   `json:"other_allocs"`
	Merged           []string `json:"merged,omitempty"`
	// Covers are the caches the run allocates from that this kmem_cache
	// serves: under SLUB's merging, /proc/slabinfo may name it otherwise.
	Covers []string `json:"covers,omitempty"`
}

// Limits are the host's limits as the run found them.
type Limits struct {
	NoFileHard      uint64   `json:"nofile_hard"`
	MaxWorkers      int      `json:"max_workers"` // per side; 0: as many as needed
	FileMax         int64    `json:"file_max"`
	Privileged      bool     `json:"privileged"` // CAP_SYS_ADMIN: exempt from fs.file-max
	FilesOpen       int64    `json:"files_open"` // before the run
	PortLo          int      `json:"port_lo"`
	PortHi          int      `json:"port_hi"`
	PortsHeld       int      `json:"ports_held_by_others,omitempty"` // of the range, when the run began
	Somaxconn       int64    `json:"somaxconn"`
	EpollMaxWatches int64    `json:"epoll_max_user_watches"` // 0 when not recorded
	ThreadsMax      int64    `json:"threads_max,omitempty"`  // kernel.threads-max
	PidMax          int64    `json:"pid_max,omitempty"`      // kernel.pid_max
	Tasks           int64    `json:"tasks,omitempty"`        // threads on the host before the run
	ConntrackMax    int64    `json:"conntrack_max"`
	ConntrackCount  int64    `json:"conntrack_count"`
	TCPMemPages     [3]int64 `json:"tcp_mem_pages"`
	PageSize        uint64   `json:"page_size"`
	Reserve         uint64   `json:"reserve"`
	RmemDefault     uint64   `json:"rmem_default"` // tcp_rmem[1]
	WmemDefault     uint64   `json:"wmem_default"` // tcp_wmem[1]
}

// Bound is a limit that bound: its kind, the count it bound at, and why.
type Bound struct {
	Kind   limit.Kind `json:"kind"`
	At     uint64     `json:"at"`
	Detail string     `json:"detail"`
}

// DialerGone is a dialer that closed connections serve still held.
type DialerGone struct {
	Addr   string `json:"addr"`
	Closed uint64 `json:"closed"`
	Of     uint64 `json:"of"`
}
