package runner

import (
	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/serverlog"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// Result is the runner's part of summary.json.
type Result struct {
	Requested   int               `json:"requested"`
	Established uint64            `json:"established"`
	Accepted    uint64            `json:"accepted"`
	Verified    uint64            `json:"verified"`
	Echoed      uint64            `json:"echoed"`
	Failed      map[string]uint64 `json:"failed"`
	Limit       *Limit            `json:"limit"`
	// ParentOOMShielded: the run's parent had oom_score_adj −1000, out of
	// the OOM killer's reach; its workers kept the value it had.
	ParentOOMShielded bool       `json:"parent_oom_shielded"`
	StoppedBy         limit.Kind `json:"stopped_by"` // the limit's kind, or limit.Complete
	// Aborted says a second signal killed the workers: what was sampled
	// after that is not the run's peak.
	Aborted bool `json:"aborted,omitempty"`
	// Deaths are the workers that died before they were told to exit.
	Deaths []Death `json:"deaths,omitempty"`
	// WorkerExecutable ran the workers: c10mprobe-worker when it lies
	// beside c10mprobe, else c10mprobe itself.
	WorkerExecutable string       `json:"worker_executable"`
	Server           ServerResult `json:"server"`
	ServerSockets    uint64       `json:"server_sockets_on_port"`
	// Unaccepted: serve, where dialers brought more than --conns: the
	// connections on its port at the peak that no worker accepted, left
	// in the accept queue (reset when serve closes its listener).
	Unaccepted              uint64 `json:"unaccepted,omitempty"`
	DistinctClientEndpoints uint64 `json:"distinct_client_endpoints"`
	// At the peak, from the same sock_diag dump: the truesize of the skbs
	// queued on the run's sockets (rmem_alloc + wmem_queued), by end, and
	// what each socket holds against tcp_mem.
	SocketBuffers       uint64       `json:"socket_buffers_bytes"`
	SocketBuffersBySide SideBytes    `json:"socket_buffers_by_side"`
	PeakSocketBuffered  []uint64     `json:"-"`
	SourceAddresses     int          `json:"source_addresses"`
	SourcePorts         SourcePorts  `json:"source_ports"`
	Workers             WorkerCounts `json:"workers"`
	Plan                Plan         `json:"plan"`
	Phases              Phases       `json:"phases"`
	WallSeconds         float64      `json:"wall_seconds"`
	ConnectRate         float64      `json:"connect_rate_per_second"`
	VerifiedRate        float64      `json:"verified_per_second"`
	RunnerPss           uint64       `json:"runner_pss_bytes"`
	RunnerPssByRole     PssByRole    `json:"runner_pss_by_role"`
	MaxSocketsPerWorker uint64       `json:"max_sockets_per_worker"`
	// WorkerOwnFDs is the most fds a worker held for itself (measured), so
	// RLIMIT_NOFILE less it is what a worker can hold in sockets.
	WorkerOwnFDs    uint64 `json:"worker_own_fds"`
	ReserveBytes    uint64 `json:"reserve_bytes"`
	ListenOverflows int64  `json:"listen_overflows"`
	ListenDrops     int64  `json:"listen_drops"`
	// SoftnetDropped: packets dropped at a full per-CPU input backlog
	// during the run (net.core.netdev_max_backlog).
	SoftnetDropped int64           `json:"softnet_dropped"`
	SysctlChanges  []sysctl.Change `json:"sysctl_changes"`
	Payload        PayloadResult   `json:"payload"`
	Memcap         *MemcapResult   `json:"memcap,omitempty"`
	Settings       Settings        `json:"settings"`
	// Mode is run, serve or dial; Dialers what serve saw, Share a dialer's part.
	Mode       string   `json:"mode"`
	Dialers    []Dialer `json:"dialers,omitempty"`
	Share      *Share   `json:"share,omitempty"`
	PeerClosed uint64   `json:"peer_closed,omitempty"` // dial: connections the server closed
	// ConntrackPeak is nf_conntrack_count at the peak (0: not loaded).
	ConntrackPeak int64       `json:"conntrack_peak,omitempty"`
	Swap          *SwapResult `json:"swap,omitempty"`
	// Machine is --machine-mem's smaller machine; Ballast the --ballast.
	Machine *host.MachineResult `json:"machine,omitempty"`
	Ballast *BallastResult      `json:"ballast,omitempty"`
}

// SwapResult is what the run's swapfile took in.
type SwapResult struct {
	Bytes    uint64 `json:"bytes"`
	Path     string `json:"path"`
	SwapOut  uint64 `json:"swap_out_pages"` // /proc/vmstat pswpout during the run
	SwapIn   uint64 `json:"swap_in_pages"`
	PeakUsed uint64 `json:"peak_used_bytes"` // SwapTotal − SwapFree at the peak
}

// MemcapResult is what the run's memory cgroup saw.
type MemcapResult = host.MemcapResult

// PayloadResult is what --payload did: bytes asked per side, bytes the
// kernel accepted from both sides, bytes read back.
type PayloadResult struct {
	Bytes  int    `json:"bytes_per_side"`
	Unread bool   `json:"unread"`
	Sent   uint64 `json:"sent"`
	Read   uint64 `json:"read"`
}

// ServerResult is the server every connection landed on: the built-in one,
// or one the user brought (--target) and what it spent.
type ServerResult struct {
	Addr     string `json:"addr"`
	Port     int    `json:"port"`
	External bool   `json:"external"`
	Exchange string `json:"exchange"`
	// The rest is for a server the user brought.
	Pids         []int  `json:"pids,omitempty"`
	Cmd          string `json:"cmd,omitempty"`
	RlimitNoFile uint64 `json:"rlimit_nofile,omitempty"` // soft, of its process with the most fds; 0 unlimited
	RlimitNProc  uint64 `json:"rlimit_nproc,omitempty"`
	// Held is what its processes held at the peak: the sockets on its port
	// less those still waiting in its accept queue.
	Held uint64 `json:"held_connections,omitempty"`
	// Per connection held, from its processes' smaps_rollup and status at
	// the peak less at idle.
	PssPerConnection     float64       `json:"pss_bytes_per_connection"`
	AnonPerConnection    float64       `json:"anon_bytes_per_connection"` // Pss_Anon: heap and thread stacks
	ThreadsPerConnection float64       `json:"threads_per_connection"`
	Idle                 *ServerSample `json:"idle,omitempty"`
	Peak                 *ServerSample `json:"peak,omitempty"`
	// Backlog is its accept queue's length (min of listen()'s backlog and
	// somaxconn when it listened), AcceptQueuePeak what waited in it at the peak.
	Backlog         uint32 `json:"backlog,omitempty"`
	AcceptQueuePeak uint32 `json:"accept_queue_at_peak"`
	// Exited: the --server-cmd exited before the run stopped it.
	Exited *ServerExit `json:"exited,omitempty"`
	// Log is what a --server-cmd's log says went wrong.
	Log *serverlog.Digest `json:"log,omitempty"`
}

// ServerSample is what a brought server's processes held at one moment.
type ServerSample struct {
	Pss     uint64 `json:"pss_bytes"`
	PssAnon uint64 `json:"pss_anon_bytes"`
	Threads uint64 `json:"threads"`
	FDs     uint64 `json:"fds"` // of its process holding the most
}

// WorkerCounts is how many worker processes each side used.
type WorkerCounts struct {
	Client int `json:"client"`
	Server int `json:"server"`
}

// Phases are the wall-clock seconds of each phase.
type Phases struct {
	ConnectSeconds  float64 `json:"connect_seconds"`
	ExchangeSeconds float64 `json:"exchange_seconds"`
	HoldSeconds     float64 `json:"hold_seconds"`
	// HoldCutShort says a signal ended --hold early. The exchange was over
	// by then, so it does not decide the exit code.
	HoldCutShort bool    `json:"hold_cut_short,omitempty"`
	CloseSeconds float64 `json:"close_seconds"`
	// CensusPauseSeconds is the connect phase's pause for the slab census
	// (--kmem census): in ConnectSeconds, and left out of the rates.
	CensusPauseSeconds float64 `json:"census_pause_seconds,omitempty"`
}

// PssByRole splits the runner's PSS: client workers, server workers, parent.
type PssByRole struct {
	Client uint64 `json:"client"`
	Server uint64 `json:"server"`
	Parent uint64 `json:"parent"`
}

// SideBytes is a byte count split by end of the connection.
type SideBytes struct {
	Client uint64 `json:"client"`
	Server uint64 `json:"server"`
}

// Settings are what the run was asked to do that changes its result.
type Settings struct {
	Rate         float64    `json:"rate"` // connections per second; 0 for no limit
	Inflight     int        `json:"inflight"`
	NoTune       bool       `json:"no_tune"`
	MemLimit     uint64     `json:"mem_limit"`
	Swap         uint64     `json:"swap"`
	WorkerFDs    uint64     `json:"worker_fds"` // 0: the hard limit
	MaxWorkers   int        `json:"max_workers"`
	Sources      []string   `json:"sources,omitempty"` // given with --src; automatic otherwise
	PortRange    [2]int     `json:"port_range"`
	Sysctls      []KeyValue `json:"sysctls,omitempty"`
	Payload      int        `json:"payload"`
	Unread       bool       `json:"unread"`
	HoldSeconds  float64    `json:"hold_seconds"`
	ReserveBytes uint64     `json:"reserve_bytes"`
	Target       string     `json:"target,omitempty"`
	Family       string     `json:"family"`
	Exchange     string     `json:"exchange,omitempty"`
	PortChoice   string     `json:"port_choice"`
	// Netns: both ends ran in a private network namespace (--netns), with
	// its own established hash (net.ipv4.tcp_child_ehash_entries).
	Netns bool `json:"netns,omitempty"`
}

// SourcePorts is what the client ends had of ip_local_port_range.
type SourcePorts struct {
	Range          string `json:"range"` // "LO-HI"
	HeldByOthers   int    `json:"held_by_others"`
	FreePerAddress int    `json:"free_per_address"`
	Addresses      int    `json:"addresses"`
	// Chosen by the kernel or the runner (--port-choice); for the runner,
	// the (address, port) pairs it skipped because another socket held them.
	ChosenBy string `json:"chosen_by"`
	Skipped  uint64 `json:"skipped,omitempty"`
}
