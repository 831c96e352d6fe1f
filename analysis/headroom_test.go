package analysis

import (
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/memmodel"
)

// A server in a pod: 10,000 connections from clients elsewhere, a thread
// each, in a cgroup with memory.max and pids.max. Each limit's figure is
// worked by hand from the sample below.
func TestHeadroomOfAServerInAPod(t *testing.T) {
	in := HeadroomInput{
		Ports: []uint16{8080}, Conns: 10000,
		Buffered:        make([]uint64, 10000),
		RcvBufs:         make([]uint64, 10000),
		RmemDefault:     131072,
		KernelPerSocket: 3800,
		Procs:           []HeadroomProc{{Pid: 7, Comm: "java", UID: 1000, Conns: 10000, FDs: 10050, NoFile: 65536, Threads: 10040, Pss: 200 << 20, EpollWatches: 0}},
		Listeners:       []HeadroomListener{{Addr: "0.0.0.0:8080", Queued: 3, Max: 4096}},
		MemTotal:        32 << 30, MemAvailable: 16 << 30, Reserve: 1 << 30,
		Room:      memmodel.Room{Available: 16 << 30},
		TCPMemNow: 5000, TCPMem: [3]int64{90000, 120000, 180000},
		FileMax: 1 << 20, FilesOpen: 20000,
		ConntrackMax: 262144, ConntrackCount: 10500,
		ThreadsMax: 100000, PidMax: 4194304, Tasks: 10500,
		PortLo: 32768, PortHi: 60999,
		Cgroup: &HeadroomCgroup{Path: "/kubepods/pod1", MemMax: 2 << 30, MemCurrent: 1 << 30, SockBytes: 40 << 20, PidsMax: 12000, PidsNow: 10100},
	}
	// Buffers: 5,000 sockets hold 8 KiB each, one a receive buffer grown.
	for i := range 5000 {
		in.Buffered[i] = 8192
	}
	in.RcvBufs[0] = 6 << 20
	h := ExplainHeadroom(in)

	// Per connection: one socket here (clients elsewhere); buffers
	// 5,000 × 8 KiB over 10,000; the JVM's 200 MiB PSS over 10,000.
	c := h.PerConn
	if c.Sockets != 1 || c.Kernel != 3800 || c.Buffers != 4096 || c.User != float64(200<<20)/10000 {
		t.Errorf("per connection %+v", c)
	}
	if b := h.Buffers; b.P50 != 8192 || b.Max != 8192 || b.Total != 5000*8192 || b.Grown != 1 {
		t.Errorf("buffers %+v", b)
	}
	want := map[string]int64{
		"fds per process": 10000 + 65536 - 10050,
		// (2 GiB − 1 GiB) / (3800 + 200 MiB/10k + 40 MiB/10k)
		"memory cgroup": 10000 + 37069,
		// The threads' room, pids.max − pids.current = 1,900, a thread
		// a connection more (10,040 threads for 10,000 now).
		"threads": 10000 + 1900,
		// memmodel without swap: (16 GiB − the 1 GiB reserve − 1 KiB a
		// connection held) over (3,800 + 4,096 + 20,972 + 1 KiB) B.
		"memory":           10000 + 538476,
		"tcp_mem pressure": 10000 + (120000-5000)*4096/4096,
		"conntrack":        10000 + 262144 - 10500,
		"fs.file-max":      10000 + (1<<20 - 20000),
	}
	for name, at := range want {
		l := headroomLimit(h, name)
		if l == nil || l.BindsAt == nil || *l.BindsAt != at || *l.More != at-10000 {
			t.Errorf("%s: %+v, want binds at %d", name, l, at)
		}
	}
	if h.Binding != "threads" || !strings.Contains(h.Verdict, "threads binds first at 11,900 connections, 1,900 more than now") ||
		!strings.Contains(h.Verdict, "then memory cgroup at") {
		t.Errorf("binding %q, verdict %q", h.Binding, h.Verdict)
	}
	// No epoll, no clients here: those limits are not listed; the accept
	// queue is, as a rate, never as a count.
	for _, name := range []string{"epoll watches", "ephemeral ports"} {
		if headroomLimit(h, name) != nil {
			t.Errorf("%s listed", name)
		}
	}
	if q := headroomLimit(h, "accept queue"); q == nil || q.BindsAt != nil || q.InUse != 3 || q.Max != 4096 {
		t.Errorf("accept queue %+v", q)
	}
	for i := 1; i < len(h.Limits); i++ {
		a, b := h.Limits[i-1].BindsAt, h.Limits[i].BindsAt
		if a == nil && b != nil || a != nil && b != nil && *a > *b {
			t.Errorf("limits out of order at %d: %s before %s", i, h.Limits[i-1].Name, h.Limits[i].Name)
		}
	}
}

// Connections the host does not track, a root server, buffers empty: those
// limits are listed as never binding, with why.
func TestHeadroomNeverBinds(t *testing.T) {
	in := HeadroomInput{
		Ports: []uint16{9999}, Conns: 2000, LocalPeers: 2000,
		Buffered: make([]uint64, 2000), KernelPerSocket: 3800,
		Procs:        []HeadroomProc{{Pid: 1, Comm: "srv", UID: 0, Conns: 2000, FDs: 2010, Pss: 10 << 20, EpollWatches: 2001}},
		MemAvailable: 8 << 30, Reserve: 1 << 30,
		TCPMem: [3]int64{1, 2, 3}, FileMax: 100000, FilesOpen: 5000,
		ConntrackMax: 65536, ConntrackCount: 12, EpollMaxWatches: 100000,
		PortLo: 32768, PortHi: 60999, BusiestSource: "127.0.0.1", BusiestDest: "127.0.0.1:9999", BusiestSourcePorts: 2000,
	}
	h := ExplainHeadroom(in)
	for _, name := range []string{"fs.file-max", "tcp_mem pressure", "conntrack"} {
		if l := headroomLimit(h, name); l == nil || l.BindsAt != nil || l.Note == "" {
			t.Errorf("%s: %+v, want listed as never binding, with a note", name, l)
		}
	}
	if l := headroomLimit(h, "fds per process"); l != nil {
		t.Errorf("an unlimited RLIMIT_NOFILE listed: %+v", l)
	}
	// Two sockets a connection here; the clients' source has 26,232
	// ports left toward the server's address.
	if l := headroomLimit(h, "ephemeral ports"); h.PerConn.Sockets != 2 || l == nil || *l.BindsAt != 2000+26232 || h.Binding != "ephemeral ports" {
		t.Errorf("sockets %.1f, ports %+v, binding %q", h.PerConn.Sockets, l, h.Binding)
	}
	if l := headroomLimit(h, "epoll watches"); l == nil || *l.More != 100000-2001 {
		t.Errorf("epoll watches %+v", l)
	}
}

func headroomLimit(h Headroom, name string) *HeadroomLimit {
	for i := range h.Limits {
		if h.Limits[i].Name == name {
			return &h.Limits[i]
		}
	}
	return nil
}

// A thread-per-connection server run by an ordinary user is bound by its
// user's RLIMIT_NPROC, which counts every task of the user; root's is not.
func TestHeadroomThreadsUnderNproc(t *testing.T) {
	in := HeadroomInput{
		Ports: []uint16{19980}, Conns: 200,
		Procs:      []HeadroomProc{{Pid: 9, Comm: "java", UID: 65534, Conns: 200, FDs: 210, Threads: 230, NProc: 600, UserTasks: 250}},
		ThreadsMax: 100000, PidMax: 32768, Tasks: 900,
	}
	h := ExplainHeadroom(in)
	if l := headroomLimit(h, "threads"); h.Binding != "threads" || l == nil || *l.BindsAt != 200+350 || !strings.Contains(l.Value, "RLIMIT_NPROC 600") {
		t.Errorf("binding %q, threads %+v; want threads at 550 by RLIMIT_NPROC", h.Binding, l)
	}
	in.Procs[0].UID = 0
	if l := headroomLimit(ExplainHeadroom(in), "threads"); l == nil || *l.BindsAt != 200+32768-900 {
		t.Errorf("root's threads %+v; want pid_max's room, RLIMIT_NPROC exempt", l)
	}
}

// With swap, memory binds where memmodel says the machine ends: here all
// that can go to swap is out before swap is full; swapping begins first.
func TestHeadroomMemoryWithSwap(t *testing.T) {
	const gib = 1 << 30
	in := HeadroomInput{
		Ports: []uint16{80}, Conns: 1000, Buffered: make([]uint64, 1000), KernelPerSocket: 8000,
		Procs:    []HeadroomProc{{Pid: 1, Comm: "srv", UID: 1000, Conns: 1000, Pss: 2000 * 1000}},
		MemTotal: 8 * gib, MemAvailable: 2 * gib, Reserve: 64 << 20,
		Room: memmodel.Room{Headroom: gib, File: gib, Available: 2 * gib, Swappable: gib, Swap: 2 * gib},
	}
	h := ExplainHeadroom(in)
	// (2 GiB + 1 GiB swappable − 64 MiB − 1,000 KiB) / (8,000 + 1 KiB)
	// before swap holds 4 GiB / 10,000 B; swapping begins at 2 GiB / 10,000 B.
	l := headroomLimit(h, "memory")
	if l == nil || *l.BindsAt != 1000+349411 || !strings.Contains(l.Note, "reclaim_exhausted") || !strings.Contains(l.Value, "swapping begins 214,748 connections more") {
		t.Errorf("memory %+v", l)
	}
}
