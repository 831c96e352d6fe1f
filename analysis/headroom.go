package analysis

import (
	"fmt"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/memmodel"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// HeadroomInput is one sample of a live server and the host's limits, as
// `headroom` read them: no connection opened.
type HeadroomInput struct {
	Ports      []uint16 `json:"ports"`
	Conns      int      `json:"connections"` // established on its ports, held by its processes
	LocalPeers int      `json:"local_peers"` // of those, with the client's socket on this host too
	// Buffered is each server socket's memory against tcp_mem; PeerBuffered
	// the local peers' sockets', summed.
	Buffered     []uint64 `json:"-"`
	PeerBuffered uint64   `json:"-"`
	RcvBufs      []uint64 `json:"-"`
	RmemDefault  uint64   `json:"-"` // tcp_rmem[1]: the receive buffer a socket starts with
	// GrownSockets are the server sockets whose receive buffers grew most
	// past RmemDefault, largest first.
	GrownSockets []HeadroomSocket `json:"-"`
	Procs        []HeadroomProc
	Listeners    []HeadroomListener
	// KernelPerSocket is the slab objects of one socket held open (sock,
	// inode, dentry, file, epoll item), from /proc/slabinfo's object sizes.
	KernelPerSocket uint64
	KernelWhy       string
	MemTotal        uint64
	MemAvailable    uint64
	// Room is the machine's memory as more connections will meet it
	// (memmodel), read from /proc/zoneinfo and /proc/meminfo.
	Room            memmodel.Room
	Reserve         uint64
	TCPMemNow       int64    // pages (sockstat "mem")
	TCPMem          [3]int64 // net.ipv4.tcp_mem pages: low, pressure, max
	FileMax         int64
	FilesOpen       int64
	ConntrackMax    int64 // 0: nf_conntrack not loaded
	ConntrackCount  int64
	EpollMaxWatches int64
	ThreadsMax      int64
	PidMax          int64
	Tasks           int64
	PortLo, PortHi  int
	// BusiestSource is the local client address holding most ephemeral
	// ports toward one server address (BusiestDest), and how many; set with
	// local peers only.
	BusiestSource      string
	BusiestDest        string
	BusiestSourcePorts int
	Cgroup             *HeadroomCgroup
	// Netns names the server's network namespace where it is not the
	// reader's: its sockets and net.* limits were read from inside it.
	Netns string
	// Unread is what the reader could not read, and what that leaves out.
	Unread []string
}

// HeadroomProc is one of the server's processes.
type HeadroomProc struct {
	Pid          int
	Comm         string
	UID          int
	Conns        int
	FDs          uint64
	NoFile       uint64 // 0: unlimited
	Threads      uint64
	Pss          uint64
	EpollWatches uint64
	NProc        uint64 // soft RLIMIT_NPROC; 0 unlimited
	UserTasks    uint64 // every task of its user, which RLIMIT_NPROC counts
}

// HeadroomListener is a listening socket's accept queue.
type HeadroomListener struct {
	Addr        string
	Queued, Max uint32
}

// HeadroomCgroup is the server's cgroup v2, where it caps memory or tasks.
type HeadroomCgroup struct {
	Path                          string
	MemMax, MemCurrent, SockBytes uint64
	PidsMax, PidsNow              uint64
}

// Headroom is how many more connections a live server takes, and what runs
// out first.
type Headroom struct {
	Ports   []uint16        `json:"ports"`
	Now     int             `json:"connections"`
	PerConn HeadroomCost    `json:"per_connection"`
	Buffers HeadroomBuffers `json:"buffers"`
	// Limits, the first to bind first; those that never bind at today's
	// costs last.
	Limits  []HeadroomLimit `json:"limits"`
	Binding string          `json:"binding_limit,omitempty"`
	Verdict string          `json:"verdict"`
	// ServerPss is the server's processes' PSS, summed: between two
	// samples, its change over the connections' is their user memory.
	ServerPss uint64 `json:"server_pss_bytes"`
	// Unread is what could not be read, and what that leaves out.
	Unread []string `json:"unread,omitempty"`
}

// HeadroomCost is what one more connection costs, by kind, at today's mix.
type HeadroomCost struct {
	// Sockets is the sockets a connection keeps on this host: 1, up to 2
	// where clients on this host connect.
	Sockets   float64 `json:"sockets"`
	Kernel    float64 `json:"kernel_bytes"`
	KernelWhy string  `json:"kernel_why"`
	Buffers   float64 `json:"buffer_bytes"`
	User      float64 `json:"user_bytes"`
	UserNote  string  `json:"user_note"`
}

// Total is the memory one more connection takes.
func (c HeadroomCost) Total() float64 { return c.Kernel + c.Buffers + c.User }

// HeadroomBuffers summarizes the server sockets' buffer memory now.
type HeadroomBuffers struct {
	P50   uint64 `json:"p50_bytes"`
	P99   uint64 `json:"p99_bytes"`
	Max   uint64 `json:"max_bytes"`
	Total uint64 `json:"total_bytes"`
	// Grown is the sockets whose receive buffer autotuning grew past
	// tcp_rmem[1].
	Grown int `json:"rcvbuf_grown"`
	// Largest are those grown most, by their peers.
	Largest []HeadroomSocket `json:"largest_grown,omitempty"`
}

// HeadroomSocket is one server socket whose receive buffer grew.
type HeadroomSocket struct {
	Peer     string `json:"peer"`
	RcvBuf   uint64 `json:"rcvbuf_bytes"`
	Buffered uint64 `json:"buffered_bytes"`
}

// HeadroomLimit is one limit as headroom.
type HeadroomLimit struct {
	Name  string `json:"limit"`
	Value string `json:"value"` // what it is and how much is in use
	// InUse and Max are the limit's own units (fds, pages, bytes, …).
	InUse int64 `json:"in_use"`
	Max   int64 `json:"max"`
	// BindsAt is the connections at which it binds; nil where it does not
	// at today's costs. More is BindsAt less the connections now.
	BindsAt *int64 `json:"binds_at,omitempty"`
	More    *int64 `json:"more,omitempty"`
	Raise   string `json:"raise,omitempty"`
	Note    string `json:"note,omitempty"`
}

// ExplainHeadroom turns a sample into headroom by limit.
func ExplainHeadroom(in HeadroomInput) Headroom {
	h := Headroom{Ports: in.Ports, Now: in.Conns, Unread: in.Unread}
	h.PerConn = headroomCost(in)
	for _, p := range in.Procs {
		h.ServerPss += p.Pss
	}
	h.Buffers = headroomBuffers(in)
	b := &headroomLimits{in: in, cost: h.PerConn}
	for _, limit := range []func(){b.fds, b.files, b.memory, b.tcpMem, b.conntrack, b.epoll, b.threads, b.cgroup, b.ports, b.acceptQueues} {
		limit()
	}
	h.Limits = b.out
	slices.SortStableFunc(h.Limits, func(a, b HeadroomLimit) int {
		switch {
		case a.BindsAt == nil && b.BindsAt == nil:
			return 0
		case a.BindsAt == nil:
			return 1
		case b.BindsAt == nil:
			return -1
		}
		return int(min(max(*a.BindsAt-*b.BindsAt, -1), 1))
	})
	h.Verdict = headroomVerdict(in, &h)
	return h
}

const pageSize = 4096

func headroomCost(in HeadroomInput) HeadroomCost {
	c := HeadroomCost{Sockets: 1, KernelWhy: in.KernelWhy}
	if in.Conns > 0 {
		c.Sockets = 1 + float64(in.LocalPeers)/float64(in.Conns)
		var buffered uint64
		for _, b := range in.Buffered {
			buffered += b
		}
		c.Buffers = float64(buffered+in.PeerBuffered) / float64(in.Conns)
		var pss uint64
		for _, p := range in.Procs {
			pss += p.Pss
		}
		// The whole process over its connections: an upper bound, and
		// from one sample.
		c.User = float64(pss) / float64(in.Conns)
		c.UserNote = fmt.Sprintf("the server's PSS (%s) over its %s connections, from one sample: its fixed memory included, so an upper bound", units.Bytes(pss), units.Count(in.Conns))
	} else {
		c.UserNote = "no connections to divide the server's memory by: left out"
	}
	c.Kernel = float64(in.KernelPerSocket) * c.Sockets
	return c
}

func headroomBuffers(in HeadroomInput) HeadroomBuffers {
	var b HeadroomBuffers
	if len(in.Buffered) == 0 {
		return b
	}
	s := slices.Clone(in.Buffered)
	slices.Sort(s)
	for _, v := range s {
		b.Total += v
	}
	b.P50, b.P99, b.Max = s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
	for _, r := range in.RcvBufs {
		if in.RmemDefault > 0 && r > in.RmemDefault {
			b.Grown++
		}
	}
	b.Largest = in.GrownSockets
	return b
}

func headroomVerdict(in HeadroomInput, h *Headroom) string {
	var who []string
	for _, p := range in.Procs {
		who = append(who, fmt.Sprintf("%s (pid %d)", p.Comm, p.Pid))
	}
	ports := make([]string, len(in.Ports))
	for i, p := range in.Ports {
		ports[i] = fmt.Sprint(p)
	}
	where := ""
	if in.Netns != "" {
		where = " in network namespace " + in.Netns
	}
	s := fmt.Sprintf("port %s%s: %s connections now, held by %s", strings.Join(ports, ", "), where, units.Count(in.Conns), strings.Join(who, ", "))
	if len(h.Limits) == 0 || h.Limits[0].BindsAt == nil {
		return s + "; no limit binds at today's costs."
	}
	first := h.Limits[0]
	h.Binding = first.Name
	s += fmt.Sprintf("; %s binds first at %s connections, %s more than now (%s): raise it with %s",
		first.Name, units.Count(*first.BindsAt), units.Count(*first.More), first.Value, first.Raise)
	if len(h.Limits) > 1 && h.Limits[1].BindsAt != nil {
		s += fmt.Sprintf("; then %s at %s", h.Limits[1].Name, units.Count(*h.Limits[1].BindsAt))
	}
	return s + "."
}

// headroomLimits collects the limits of one sample, each by its own method.
type headroomLimits struct {
	in   HeadroomInput
	cost HeadroomCost
	out  []HeadroomLimit
}

// add lists a limit; with binds, at more connections than now.
func (b *headroomLimits) add(l HeadroomLimit, more float64, binds bool) {
	if binds {
		m := int64(max(0, more))
		at := int64(b.in.Conns) + m
		l.BindsAt, l.More = &at, &m
	}
	b.out = append(b.out, l)
}

func (b *headroomLimits) fds() {
	// Each process's fds: a connection is one more fd in the process that
	// accepts it. Several processes: if new connections spread as now.
	var freeFDs float64
	var fdParts []string
	limited := false
	var fdsUsed, fdsMax int64
	for _, p := range b.in.Procs {
		if p.NoFile == 0 {
			continue
		}
		limited = true
		freeFDs += float64(p.NoFile) - float64(min(p.FDs, p.NoFile))
		fdsUsed, fdsMax = fdsUsed+int64(p.FDs), fdsMax+int64(p.NoFile)
		fdParts = append(fdParts, fmt.Sprintf("%s (pid %d) %s of %s", p.Comm, p.Pid, units.Count(p.FDs), units.Count(p.NoFile)))
	}
	if limited {
		l := HeadroomLimit{Name: "fds per process", Value: "RLIMIT_NOFILE: " + strings.Join(fdParts, "; "), InUse: fdsUsed, Max: fdsMax,
			Raise: "LimitNOFILE= in its systemd unit, or prlimit --pid PID --nofile N:N on the running process"}
		if len(fdParts) > 1 {
			l.Note = "over its processes, if new connections spread over them as now"
		}
		b.add(l, freeFDs, true)
	}
}

func (b *headroomLimits) files() {
	serverRoot := len(b.in.Procs) > 0 && b.in.Procs[0].UID == 0
	if b.in.FileMax > 0 {
		l := HeadroomLimit{Name: "fs.file-max", Value: fmt.Sprintf("%s files open on the host of %s", units.Count(b.in.FilesOpen), units.Count(b.in.FileMax)),
			InUse: b.in.FilesOpen, Max: b.in.FileMax, Raise: "sysctl fs.file-max"}
		if serverRoot {
			l.Note = "the server runs as root, which CAP_SYS_ADMIN exempts (alloc_empty_file)"
			b.add(l, 0, false)
		} else {
			b.add(l, float64(b.in.FileMax-b.in.FilesOpen)/b.cost.Sockets, true)
		}
	}
}

// memory projects the connections more with memmodel, the model run's
// machine guard and predict use: without swap, until what kernel
// allocations can still get (free pages above the min watermarks, page
// cache reclaim frees) is down to the reserve and run's 1 KiB a connection
// for the exchange; with swap, until swap is full or all that can go to it
// is out. Its cost: the kernel's (slab objects and buffers, which stay)
// and the server's own pages (which swap can take).
func (b *headroomLimits) memory() {
	cost := memmodel.Cost{Pinned: b.cost.Kernel + b.cost.Buffers, User: b.cost.User}
	if cost.Pinned+cost.User <= 0 || b.in.Room.Available == 0 {
		return
	}
	ends := memmodel.RunEnds
	ends.MarginFixed = b.in.Reserve
	p := memmodel.Project(b.in.Room, cost, ends, uint64(b.in.Conns))
	r := b.in.Room
	from := "free above the min watermarks, and page cache"
	if r.Slab > 0 {
		from = fmt.Sprintf("free above the min watermarks, page cache, and %s of dentries and inodes no one holds", units.Bytes(r.Slab))
	}
	value := fmt.Sprintf("%s kernel allocations can still get (%s), keeping %s and 1 KiB a connection; %s a connection (%s of it the kernel's)",
		units.Bytes(r.Available), from, units.Bytes(b.in.Reserve), units.Bytes(uint64(cost.Pinned+cost.User)), units.Bytes(uint64(cost.Pinned)))
	if r.Swap > 0 {
		value += fmt.Sprintf("; %s of swap, %s of anonymous memory it can take: swapping begins %s connections more", units.Bytes(r.Swap), units.Bytes(r.Swappable), units.Count(p.SwapStart))
	}
	b.add(HeadroomLimit{Name: "memory", Value: value, InUse: int64(b.in.MemTotal - b.in.MemAvailable), Max: int64(b.in.MemTotal),
		Raise: "more RAM, or less per connection (smaller buffers: tcp_rmem, tcp_wmem)",
		Note:  fmt.Sprintf("the machine's end by %s, as memmodel projects run's (--machine-mem) and predict's", p.StopBy)}, float64(p.Stop), true)
}

func (b *headroomLimits) tcpMem() {
	if b.in.TCPMem[1] > 0 {
		l := HeadroomLimit{Name: "tcp_mem pressure", Value: fmt.Sprintf("%s pages of socket buffers in use, pressure at %s (net.ipv4.tcp_mem)", units.Count(b.in.TCPMemNow), units.Count(b.in.TCPMem[1])),
			InUse: b.in.TCPMemNow, Max: b.in.TCPMem[1], Raise: "sysctl net.ipv4.tcp_mem (its middle value)"}
		if b.cost.Buffers > 0 {
			b.add(l, float64(b.in.TCPMem[1]-b.in.TCPMemNow)*pageSize/b.cost.Buffers, true)
		} else {
			l.Note = "its sockets hold no buffer memory now: they bind it only when they queue data"
			b.add(l, 0, false)
		}
	}
}

func (b *headroomLimits) conntrack() {
	switch {
	case b.in.ConntrackMax > 0 && b.in.ConntrackCount < int64(b.in.Conns):
		b.add(HeadroomLimit{Name: "conntrack", Value: fmt.Sprintf("%s entries of %s (nf_conntrack_max), fewer than the connections", units.Count(b.in.ConntrackCount), units.Count(b.in.ConntrackMax)),
			InUse: b.in.ConntrackCount, Max: b.in.ConntrackMax, Note: "its connections are not tracked (no rule asks for conntrack, or a notrack rule)"}, 0, false)
	case b.in.ConntrackMax > 0:
		b.add(HeadroomLimit{Name: "conntrack", Value: fmt.Sprintf("%s entries of %s (nf_conntrack_max)", units.Count(b.in.ConntrackCount), units.Count(b.in.ConntrackMax)),
			InUse: b.in.ConntrackCount, Max: b.in.ConntrackMax, Raise: "sysctl net.netfilter.nf_conntrack_max, or a notrack rule for the port",
			Note: "one entry a connection, where the connections are tracked"}, float64(b.in.ConntrackMax-b.in.ConntrackCount), true)
	}
}

func (b *headroomLimits) epoll() {
	var watches uint64
	for _, p := range b.in.Procs {
		watches += p.EpollWatches
	}
	if watches > 0 && b.in.EpollMaxWatches > 0 {
		b.add(HeadroomLimit{Name: "epoll watches", Value: fmt.Sprintf("the server's epoll instances watch %s fds; its user may watch %s (fs.epoll.max_user_watches)", units.Count(watches), units.Count(b.in.EpollMaxWatches)),
			InUse: int64(watches), Max: b.in.EpollMaxWatches, Raise: "sysctl fs.epoll.max_user_watches",
			Note: "per user: the user's other processes' watches count too, and were not read"}, float64(b.in.EpollMaxWatches)-float64(watches), true)
	}
}

func (b *headroomLimits) threads() {
	var threads uint64
	for _, p := range b.in.Procs {
		threads += p.Threads
	}
	if b.in.Conns == 0 || threads < uint64(b.in.Conns) {
		return // not a thread a connection
	}
	// A connection more is a thread more: the room in tasks is the room
	// in connections.
	room := float64(min(b.in.ThreadsMax, b.in.PidMax) - b.in.Tasks)
	value := fmt.Sprintf("%s threads for %s connections (a thread each); %s tasks on the host of kernel.threads-max %s and kernel.pid_max %s",
		units.Count(threads), units.Count(b.in.Conns), units.Count(b.in.Tasks), units.Count(b.in.ThreadsMax), units.Count(b.in.PidMax))
	if c := b.in.Cgroup; c != nil && c.PidsMax > 0 {
		room = min(room, float64(c.PidsMax)-float64(c.PidsNow))
		value += fmt.Sprintf("; its cgroup %s of pids.max %s", units.Count(c.PidsNow), units.Count(c.PidsMax))
	}
	// RLIMIT_NPROC counts every task of the user, and binds all but root
	// (copy_process: CAP_SYS_RESOURCE or CAP_SYS_ADMIN exempt).
	if p := b.in.Procs[0]; p.UID != 0 && p.NProc > 0 {
		room = min(room, float64(p.NProc)-float64(p.UserTasks))
		value += fmt.Sprintf("; its user runs %s tasks of RLIMIT_NPROC %s", units.Count(p.UserTasks), units.Count(p.NProc))
	}
	b.add(HeadroomLimit{Name: "threads", Value: value, InUse: int64(threads), Max: int64(threads) + int64(max(0, room)),
		Raise: "an event loop instead of a thread a connection; or RLIMIT_NPROC (LimitNPROC=), kernel.threads-max, kernel.pid_max, TasksMax="}, room, true)
}

func (b *headroomLimits) cgroup() {
	if c := b.in.Cgroup; c != nil && c.MemMax > 0 {
		// What the cgroup is charged for a connection: the accepted
		// socket's objects, its buffers and the server's own memory.
		charge := float64(b.in.KernelPerSocket) + b.cost.User
		if b.in.Conns > 0 {
			charge += float64(c.SockBytes) / float64(b.in.Conns)
		}
		if charge > 0 {
			b.add(HeadroomLimit{Name: "memory cgroup", Value: fmt.Sprintf("%s charged of its cgroup's memory limit %s (%s), %s a connection", units.Bytes(c.MemCurrent), units.Bytes(c.MemMax), c.Path, units.Bytes(uint64(charge))),
				InUse: int64(c.MemCurrent), Max: int64(c.MemMax), Raise: "memory.max (MemoryMax= in its unit, or the pod's memory limit)",
				Note: "the kernel objects of its sockets as the slab model prices them; from 6.12 an accepted sock is charged to the accepting cgroup too"},
				(float64(c.MemMax)-float64(c.MemCurrent))/charge, true)
		}
	}
}

func (b *headroomLimits) ports() {
	if b.in.LocalPeers > 0 && b.in.PortHi >= b.in.PortLo {
		size := b.in.PortHi - b.in.PortLo + 1
		b.add(HeadroomLimit{Name: "ephemeral ports", Value: fmt.Sprintf("clients on this host from %s to %s hold %s of the %s ports of ip_local_port_range %d–%d", b.in.BusiestSource, b.in.BusiestDest, units.Count(b.in.BusiestSourcePorts), units.Count(size), b.in.PortLo, b.in.PortHi),
			InUse: int64(b.in.BusiestSourcePorts), Max: int64(size), Raise: "more client source addresses, or a wider net.ipv4.ip_local_port_range",
			Note: "for clients on this host, one source address to one server address and port; clients elsewhere have their own"},
			float64(size-b.in.BusiestSourcePorts)*float64(b.in.Conns)/float64(b.in.LocalPeers), true)
	}
}

func (b *headroomLimits) acceptQueues() {
	for _, l := range b.in.Listeners {
		b.add(HeadroomLimit{Name: "accept queue", Value: fmt.Sprintf("%s: %d waiting to be accepted of %d (its backlog, capped by net.core.somaxconn)", l.Addr, l.Queued, l.Max),
			InUse: int64(l.Queued), Max: int64(l.Max), Raise: "the server's listen() backlog and net.core.somaxconn",
			Note: "a rate limit, not a count: a full queue drops new connections while the server is slow to accept"}, 0, false)
	}
}
