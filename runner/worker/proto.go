package worker

import (
	"encoding/binary"
	"fmt"
)

// The parent drives each worker over a SOCK_SEQPACKET socketpair (fd 3 in the
// worker): one byte per Command down, one fixed-size Stats record up. The
// worker's configuration arrives as JSON on its stdin, which has no size limit.

const (
	ctlFD      = 3 // control socket in every worker
	listenerFD = 4 // the shared listening socket in server workers
)

type Command byte

const (
	CmdConnect  Command = iota + 1 // clients: start opening connections
	CmdStop                        // clients: open no more, finish what is pending
	CmdExchange                    // servers: send the numbered message
	CmdFinish                      // both: the exchange is over; count what is missing
	CmdClose                       // both: close every socket
	CmdExit                        // both: exit
	CmdResume                      // clients: go on opening after the census pause
	// CmdAccept: servers still listening accept what waits in the queue.
	// The shared listener is watched with EPOLLEXCLUSIVE, which wakes one
	// worker a wakeup: when that one stops listening at its quota, what
	// was queued behind it wakes nobody until the next connection comes.
	CmdAccept
	// CmdHold and CmdRelease: clients hold their opening, and go on; a
	// smaller machine's pacing while its tasks stall on reclaim.
	CmdHold
	CmdRelease
)

// Failure kinds, counted per worker and reported by name.
type FailKind uint8

const (
	FailEMFILE FailKind = iota
	FailENFILE
	FailPorts        // EADDRNOTAVAIL at connect: no free source port
	FailAddr         // EADDRNOTAVAIL at bind: the source address is not local
	FailNoMem        // ENOBUFS or ENOMEM
	FailEpollWatches // ENOSPC at epoll_ctl: fs.epoll.max_user_watches
	FailTimedOut
	FailRefused
	FailReset
	FailEOF
	FailShortRead
	FailMismatch
	FailTimeout      // no answer before the exchange ended
	FailPayloadShort // --payload not all sent or read before the exchange ended
	FailNotAccepted
	FailWorkerDied
	FailOther
	NumFailKinds
)

var failNames = [NumFailKinds]string{
	FailEMFILE:       "emfile",
	FailENFILE:       "enfile",
	FailPorts:        "no_source_port",
	FailAddr:         "source_address_not_local",
	FailNoMem:        "no_memory",
	FailEpollWatches: "epoll_watches",
	FailTimedOut:     "connect_timed_out",
	FailRefused:      "connection_refused",
	FailReset:        "reset",
	FailEOF:          "eof",
	FailShortRead:    "short_read",
	FailMismatch:     "mismatch",
	FailTimeout:      "exchange_timeout",
	FailPayloadShort: "payload_short",
	FailNotAccepted:  "not_accepted",
	FailWorkerDied:   "worker_died",
	FailOther:        "other",
}

func (k FailKind) String() string { return failNames[k] }

// Stats is what a worker reports. Fixed size, so that encoding/binary packs it.
type Stats struct {
	Opened      uint64 // client: connects started; server: accepted
	Established uint64 // client: connected; server: accepted
	Sent        uint64 // server: numbered messages written; client: echoes written
	Verified    uint64 // server: echoes that matched; client: messages received
	Closed      uint64
	Failed      [NumFailKinds]uint64
	// The first failure this worker saw that stops it from opening more.
	FirstFail      uint8 // FailKind+1; 0 when none
	FirstFailErrno uint32
	FirstFailSrc   [4]byte // client: the source address that ran out of ports
	ConnectDone    uint8   // client: opening finished (quota, limit or stop); server: no longer accepting
	ExchangeDone   uint8   // every connection through its exchange (and payload) or failed
	CloseDone      uint8
	CloseNanos     int64
	PayloadSent    uint64 // bytes of --payload the kernel accepted
	PayloadRead    uint64 // bytes of the peer's payload read (none with --unread)
	OwnFDs         uint32 // fds the worker holds itself: stdio, control, listener, epoll, the Go runtime's
	PeerClosed     uint64 // client: connections the server closed after the exchange (dial's hold ends on them); serve's server: those a dialer closed
	PortsSkipped   uint64 // client, --port-choice runner: (source, port) pairs another socket held
	CensusDone     uint8  // client: opened its census share and every one of them settled
}

var StatsSize = binary.Size(Stats{})

func (s *Stats) Marshal(buf []byte) []byte {
	n, err := binary.Encode(buf, binary.LittleEndian, s)
	if err != nil {
		panic(fmt.Sprintf("encoding stats: %v", err)) // buf is sized by StatsSize
	}
	return buf[:n]
}

func (s *Stats) Unmarshal(buf []byte) error {
	if len(buf) != StatsSize {
		return fmt.Errorf("stats record of %d bytes, want %d", len(buf), StatsSize)
	}
	_, err := binary.Decode(buf, binary.LittleEndian, s)
	return err
}

// ProtoVersion is checked by every worker against its parent's: a
// c10mprobe-worker left from another build must not misread the commands
// or the Stats records. Bump it with any change to them or to Config.
const ProtoVersion = 17 // 17: CmdHold, CmdRelease

// Role is a worker's end of the connections.
type Role string

const (
	Client Role = "client"
	Server Role = "server"
)

// Config is the JSON a worker reads from stdin.
type Config struct {
	Proto    int      `json:"proto"` // ProtoVersion of the parent
	Role     Role     `json:"role"`
	Index    int      `json:"index"`
	Quota    int      `json:"quota"`    // client: connections to open; server: most to accept
	Base     uint32   `json:"base"`     // server, or an echo client: first connection number
	NoFile   uint64   `json:"nofile"`   // RLIMIT_NOFILE to set (soft, and hard when allowed)
	Sources  []string `json:"sources"`  // client: source addresses, used round-robin
	Server   string   `json:"server"`   // client: address:port to connect to
	Inflight int      `json:"inflight"` // client: most connects pending at once
	Rate     float64  `json:"rate"`     // client: most new connections per second; 0 is no limit
	Payload  int      `json:"payload"`  // both: bytes to send after the numbered message
	Unread   bool     `json:"unread"`   // both: leave the peer's payload queued
	Exchange Exchange `json:"exchange"` // client: numbered (the built-in server's), echo or none
	Stream   bool     `json:"stream"`   // server (serve): send each connection its number once accepted
	Family   Family   `json:"family"`   // client: inet, or inet6 (IPv4-mapped addresses)
	// Ports, for --port-choice runner: the client binds each socket to a
	// port of Ports[0]..Ports[1] itself, taking every Stride-th from
	// Ports[0]+Index so that no two client workers try the same one.
	Ports  [2]int `json:"ports,omitempty"`
	Stride int    `json:"stride,omitempty"`
	// QuietClose: both ends of every connection are this run's workers
	// (run, the built-in server): each closes its sockets in TCP repair
	// mode, which sends nothing.
	QuietClose bool `json:"quiet_close,omitempty"`
	// PeerCloseFails: client, --exchange none in a run, which closes its
	// connections itself: one the server closes first is a failure (eof),
	// not the end of a dialer's hold.
	PeerCloseFails bool `json:"peer_close_fails,omitempty"`
	// Census: a client pauses after opening this many (its share of the
	// census) until CmdResume; 0 for no pause.
	Census int `json:"census,omitempty"`
	// LockMemory: a --machine-mem run's workers keep the pages they touch in
	// RAM (mlockall, MCL_ONFAULT): the instrument, not the machine's other
	// programs. On Debian's 6.1 under TCG, with every worker's pages in
	// swap, the exchange after a guard's stop met the OOM killer.
	LockMemory bool `json:"lock_memory,omitempty"`
	// Window: messages the worker leaves unanswered at most in the
	// exchange; 0 for exchangeWindow.
	Window int `json:"window,omitempty"`
	// The ballast (--ballast): bytes to map and touch, touches a second.
	Bytes     uint64 `json:"bytes,omitempty"`
	TouchRate int    `json:"touch_rate,omitempty"`
}
