// Package limit names the limits a run can meet. The runner reports a kind,
// the analysis finds its row in the limits table, the summary and the tests
// read it back: one set of names, spelled once.
package limit

// Kind is what stopped a run from opening more connections. When no limit
// stopped it, the runner names the commonest failure kind instead.
type Kind string

const (
	Fds            Kind = "fds"             // EMFILE: RLIMIT_NOFILE of one process
	FileMax        Kind = "file_max"        // ENFILE: fs.file-max
	Ports          Kind = "ports"           // EADDRNOTAVAIL at connect: no free source port
	SourceAddress  Kind = "source_address"  // bind() refused the source address
	Memory         Kind = "memory"          // ENOBUFS or ENOMEM
	EpollWatches   Kind = "epoll_watches"   // ENOSPC at epoll_ctl: fs.epoll.max_user_watches
	MemoryReserve  Kind = "memory_reserve"  // spare memory fell below --reserve
	MemoryPressure Kind = "memory_pressure" // PSI: tasks stalled on memory
	SwapFull       Kind = "swap_full"       // --machine-mem: swap ≥ 95 % used
	MinWatermark   Kind = "min_watermark"   // --machine-mem: free pages at the zones' min watermark
	// ReclaimExhausted: --machine-mem without swap, MemAvailable spent:
	// free pages at the high watermarks and nothing left to reclaim.
	ReclaimExhausted Kind = "reclaim_exhausted"
	Memcap           Kind = "memcap" // the --mem-limit memory cgroup
	WorkerDied       Kind = "worker_died"
	Interrupted      Kind = "interrupted"
	ConnectStalled   Kind = "connect_stalled" // no connect completed for --timeout
	AcceptQueue      Kind = "accept_queue"    // handshakes no server worker accepted
	Conntrack        Kind = "conntrack"       // net.netfilter.nf_conntrack_max: the table full, SYNs dropped
	Unverified       Kind = "unverified"      // held, but not every exchange verified
	Other            Kind = "other"           // an errno no limit above explains, named in the detail

	// What the run's connections met when no limit stopped it: the
	// commonest failure names itself (runner's failureKinds).
	ConnectTimedOut Kind = "connect_timed_out"  // connect() timed out (ETIMEDOUT): SYNs unanswered
	Refused         Kind = "connection_refused" // ECONNREFUSED: nothing listening, or the backlog full with tcp_abort_on_overflow
	Reset           Kind = "reset"              // the peer reset an open connection
	PeerClosed      Kind = "eof"                // the peer closed before the exchange was through
	ShortRead       Kind = "short_read"         // the peer closed within a message
	Mismatch        Kind = "mismatch"           // a message came back wrong
	ExchangeTimeout Kind = "exchange_timeout"   // the exchange made no progress for --timeout
	PayloadShort    Kind = "payload_short"      // --payload not all sent or read before the exchange ended

	// Complete is what stopped a run that opened and verified all it was
	// asked to: nothing.
	Complete Kind = "complete"

	// A server the user brings (--target) meets its own limits first.
	ServerFds     Kind = "server_fds"     // its RLIMIT_NOFILE
	ServerThreads Kind = "server_threads" // kernel.threads-max, kernel.pid_max or its RLIMIT_NPROC
	ServerBacklog Kind = "server_backlog" // its accept queue: the backlog it asked listen() for, capped by somaxconn
)

// PeerSide says the kind is what the connections met at the other end —
// closed, reset, refused, unanswered, answered wrongly — not a limit of
// this host.
func PeerSide(k Kind) bool {
	switch k {
	case ConnectTimedOut, Refused, Reset, PeerClosed, ShortRead, Mismatch, ExchangeTimeout:
		return true
	}
	return false
}
