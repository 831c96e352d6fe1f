// Package live reads what a running server holds — its listening ports, its
// processes, their connections, file descriptors, threads, memory and memory
// cgroup — from sock_diag and /proc. It opens no connection and changes
// nothing: it is what `headroom` stands on.
package live

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/runner"
	"golang.org/x/sys/unix"
)

// Server is one sample of a live server.
type Server struct {
	Ports     []uint16   `json:"ports"`
	Listeners []Listener `json:"listeners"`
	Procs     []Proc     `json:"processes"`
	// Conns is the established sockets on the server's ports that its
	// processes own: one for each connection it serves.
	Conns int `json:"connections"`
	// LocalPeers is those whose other end is a socket on this host (found
	// in the same dump): a connection from here costs two sockets here.
	LocalPeers int `json:"local_peers"`
	// Buffered is each server socket's memory against tcp_mem (queued
	// skbs, forward allocation, option memory: SK_MEMINFO), and
	// PeerBuffered the same summed over the local peers' sockets.
	Buffered     []uint64 `json:"-"`
	PeerBuffered uint64   `json:"peer_buffered_bytes"`
	// RcvBufs is each server socket's receive buffer size (SK_MEMINFO
	// rcvbuf), which autotuning grows from tcp_rmem[1].
	RcvBufs []uint64 `json:"-"`
	// Peers is each server socket's other end, in the order of RcvBufs.
	Peers []netip.AddrPort `json:"-"`
	// BusiestSource is the local client address with the most sockets
	// from the ephemeral range to one server address (BusiestDest), and
	// how many, in any state but a TIME_WAIT that connect() may take over
	// (NetLimits.reusesTimeWait); zero without local peers.
	BusiestSource      netip.Addr     `json:"busiest_source,omitzero"`
	BusiestDest        netip.AddrPort `json:"busiest_dest,omitzero"`
	BusiestSourcePorts int            `json:"busiest_source_ports,omitempty"`
	Cgroup             *Cgroup        `json:"cgroup,omitempty"`
	// Netns names the server's network namespace where it is not ours
	// (OtherNetns); Net is what its namespace limits, read from inside.
	Netns      string    `json:"netns,omitempty"`
	OtherNetns bool      `json:"other_netns"`
	Net        NetLimits `json:"net"`
	// Host is the host's limits, read with Net in the server's namespace.
	Host runner.Host `json:"-"`
	// Unread is what could not be read, and what that leaves out.
	Unread []string `json:"unread,omitempty"`
}

// Listener is one listening socket of the server: its accept queue now
// (sk_ack_backlog) and its length (sk_max_ack_backlog: the backlog given to
// listen(), capped by net.core.somaxconn).
type Listener struct {
	Addr   netip.AddrPort `json:"addr"`
	Queued uint32         `json:"queued"`
	Max    uint32         `json:"max"`
}

// Proc is one of the server's processes.
type Proc struct {
	Pid     int    `json:"pid"`
	Comm    string `json:"comm"`
	Conns   int    `json:"connections"` // of Server.Conns, those in its fd table
	FDs     uint64 `json:"fds"`
	NoFile  uint64 `json:"nofile"` // soft RLIMIT_NOFILE; 0 for unlimited
	Threads uint64 `json:"threads"`
	Pss     uint64 `json:"pss_bytes"`
	// EpollWatches is the fds its epoll instances watch (fdinfo tfd
	// lines): fs.epoll.max_user_watches counts them for its user.
	EpollWatches uint64 `json:"epoll_watches"`
	UID          int    `json:"uid"`
	NProc        uint64 `json:"nproc"`      // soft RLIMIT_NPROC; 0 for unlimited
	UserTasks    uint64 `json:"user_tasks"` // its user's tasks, which RLIMIT_NPROC counts
	// Unread is what could not be read of it, and what that leaves out.
	Unread []string `json:"unread,omitempty"`
}

// Cgroup is the cgroup the server's first process is in, where it caps
// memory or tasks; nil where it caps neither.
type Cgroup struct {
	Path string `json:"path"`
	V1   bool   `json:"v1,omitempty"` // the v1 memory controller's
	// MemMax is memory.max (0 for none), MemCurrent memory.current, and
	// SockBytes memory.stat's sock: what the cgroup is charged for socket
	// buffers.
	MemMax     uint64 `json:"memory_max"`
	MemCurrent uint64 `json:"memory_current"`
	SockBytes  uint64 `json:"sock_bytes"`
	PidsMax    uint64 `json:"pids_max"` // 0 for none
	PidsNow    uint64 `json:"pids_current"`
}

// ErrNoListener: nothing listens on a port asked for.
var ErrNoListener = errors.New("nothing listens on it in this network namespace (a server in another, a container's, is found by its --pid)")

// Read samples the server listening on ports, or made of pids (with the
// ports they listen on); one of the two may be empty. A server in another
// network namespace (a container's), given by pid, is read from inside it:
// its sockets, and the limits its namespace keeps for itself.
func Read(ports []uint16, pids []int) (*Server, error) {
	var s *Server
	pid := 0 // our own namespace
	if len(pids) > 0 {
		pid = pids[0]
	}
	ns, err := inNetnsOf(pid, func() error {
		h, net, err := readHost()
		if err != nil {
			return err
		}
		if s, err = read(ports, pids, net); err == nil {
			s.Host = h
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Netns, s.OtherNetns = ns, ns != ""
	return s, nil
}

func read(ports []uint16, pids []int, net NetLimits) (*Server, error) {
	var listeners []sockdiag.Socket
	if err := dumpBoth(1<<sockdiag.StateListen, func(s *sockdiag.Socket) { listeners = append(listeners, *s) }); err != nil {
		return nil, err
	}
	owned, epolls, ports, pids, err := findServer(listeners, ports, pids)
	if err != nil {
		return nil, err
	}
	s := &Server{Ports: ports, Net: net}
	for _, l := range listeners {
		if slices.Contains(ports, l.Local.Port()) {
			s.Listeners = append(s.Listeners, Listener{Addr: l.Local, Queued: l.RQueue, Max: l.WQueue})
		}
	}
	perPid, err := s.readConnections(owned)
	if err != nil {
		return nil, err
	}
	slices.Sort(pids)
	tasks := map[int]uint64{} // by uid: one walk of /proc for a server's processes of one user
	for _, pid := range slices.Compact(pids) {
		p, err := readProc(pid, epolls[pid])
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		p.Conns = perPid[pid]
		if p.NProc > 0 {
			if _, ok := tasks[p.UID]; !ok {
				tasks[p.UID] = userTasks(p.UID)
			}
			p.UserTasks = tasks[p.UID]
		}
		s.Procs = append(s.Procs, p)
		s.Unread = append(s.Unread, p.Unread...)
	}
	s.Cgroup = readCgroup(s.Procs[0].Pid)
	return s, nil
}

func dumpBoth(states uint32, fn func(*sockdiag.Socket)) error {
	if err := sockdiag.DumpIPv4(states, fn); err != nil {
		return err
	}
	return sockdiag.DumpIPv6(states, fn)
}

// findServer finds the server's ports from its processes, or its processes
// from the listeners on its ports, maps each socket inode they hold to its
// process, and keeps each process's epoll fds from the same walk of its fd
// table.
func findServer(listeners []sockdiag.Socket, ports []uint16, pids []int) (map[uint32]int, map[int][]string, []uint16, []int, error) {
	epolls := map[int][]string{} // pid → its epoll instances' fds
	owned := map[uint32]int{}    // socket inode → pid
	for _, pid := range pids {
		e, err := scanFDs(pid, func(ino uint32) { owned[ino] = pid })
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		epolls[pid] = e
	}
	if len(ports) == 0 {
		for _, l := range listeners {
			if _, ok := owned[l.Inode]; ok && !slices.Contains(ports, l.Local.Port()) {
				ports = append(ports, l.Local.Port())
			}
		}
		if len(ports) == 0 {
			return nil, nil, nil, nil, fmt.Errorf("pid %v listens on no TCP port", pids)
		}
	}
	want := map[uint32]bool{}
	for _, l := range listeners {
		if slices.Contains(ports, l.Local.Port()) {
			want[l.Inode] = true
		}
	}
	for _, p := range ports {
		if !slices.ContainsFunc(listeners, func(l sockdiag.Socket) bool { return l.Local.Port() == p }) {
			return nil, nil, nil, nil, fmt.Errorf("port %d: %w", p, ErrNoListener)
		}
	}
	if len(pids) > 0 {
		return owned, epolls, ports, pids, nil
	}
	// The listeners' owners, found by their inodes in every fd table.
	all, err := procfs.Pids()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, pid := range all {
		inodes := map[uint32]bool{}
		listens := false
		e, _ := scanFDs(pid, func(ino uint32) { inodes[ino] = true; listens = listens || want[ino] })
		if listens {
			pids = append(pids, pid)
			epolls[pid] = e
			for ino := range inodes {
				owned[ino] = pid
			}
		}
	}
	if len(pids) == 0 {
		why := "another user's process, whose fd table only root reads, or one in another PID namespace"
		if os.Geteuid() == 0 {
			why = "a process in another PID namespace, which /proc here does not show: run headroom inside it"
		}
		return nil, nil, nil, nil, fmt.Errorf("no process here holds the listener on port %s: %s", joinPorts(ports), why)
	}
	return owned, epolls, ports, pids, nil
}

// readConnections counts the server's established sockets, those whose
// other end is on this host, their buffers and the clients' ports here; it
// returns the connections each process holds.
func (s *Server) readConnections(owned map[uint32]int) (map[int]int, error) {
	// Established sockets: the server's ends by owner, every socket by its
	// four-tuple to find the local peers.
	type tuple struct{ local, remote netip.AddrPort }
	seen := map[tuple]uint64{} // → buffered bytes
	type end struct {
		t        tuple
		buffered uint64
		rcvbuf   uint64
		pid      int
	}
	var ends []end
	// A client's connect() may take a port another destination's socket
	// holds (__inet_hash_connect checks the four-tuple), so the ports that
	// run out are those from one source address to one server address.
	type route struct {
		src netip.Addr
		dst netip.AddrPort
	}
	routes := map[route]int{}
	lo, hi := s.Net.PortLo, s.Net.PortHi
	err := dumpBoth(sockdiag.AllStates&^(1<<sockdiag.StateListen), func(sk *sockdiag.Socket) {
		t := tuple{sk.Local, sk.Remote}
		if p := sk.Local.Port(); int(p) >= lo && int(p) <= hi && slices.Contains(s.Ports, sk.Remote.Port()) &&
			!(sk.State == sockdiag.StateTimeWait && s.Net.reusesTimeWait(sk.Remote.Addr())) {
			routes[route{sk.Local.Addr(), sk.Remote}]++
		}
		if sk.State != sockdiag.StateEstablished {
			return
		}
		seen[t] = sk.Buffered()
		if pid, ok := owned[sk.Inode]; ok && slices.Contains(s.Ports, sk.Local.Port()) {
			ends = append(ends, end{t, sk.Buffered(), uint64(sk.Mem[1]), pid})
		}
	})
	if err != nil {
		return nil, err
	}
	perPid := map[int]int{}
	for _, e := range ends {
		s.Conns++
		perPid[e.pid]++
		s.Buffered = append(s.Buffered, e.buffered)
		s.RcvBufs = append(s.RcvBufs, e.rcvbuf)
		s.Peers = append(s.Peers, e.t.remote)
		if b, ok := seen[tuple{e.t.remote, e.t.local}]; ok {
			s.LocalPeers++
			s.PeerBuffered += b
			if n := routes[route{e.t.remote.Addr(), e.t.local}]; n > s.BusiestSourcePorts {
				s.BusiestSource, s.BusiestDest, s.BusiestSourcePorts = e.t.remote.Addr(), e.t.local, n
			}
		}
	}
	return perPid, nil
}

// scanFDs walks pid's fd table once: fn gets the inode of each socket, and
// the epoll instances' fds are returned (their fdinfo lists their watches).
func scanFDs(pid int, fn func(uint32)) (epolls []string, err error) {
	dir := fmt.Sprintf("%s/%d/fd", procfs.Root, pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/" + fd.Name())
		if err != nil {
			continue // closed since
		}
		if rest, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 32); err == nil {
				fn(uint32(ino))
			}
		} else if link == "anon_inode:[eventpoll]" {
			epolls = append(epolls, fd.Name())
		}
	}
	return epolls, nil
}

func readProc(pid int, epolls []string) (Proc, error) {
	p := Proc{Pid: pid}
	pr, err := procfs.ReadProcess(pid)
	if err != nil {
		return p, err
	}
	p.FDs, p.Threads, p.Pss = pr.FDs, pr.Threads, pr.Pss
	lim, err := procfs.ReadLimits(pid)
	if err != nil {
		return p, err
	}
	p.NoFile, p.NProc = lim.NoFile, lim.NProc
	comm, _ := os.ReadFile(fmt.Sprintf("%s/%d/comm", procfs.Root, pid))
	p.Comm = strings.TrimSpace(string(comm))
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("%s/%d", procfs.Root, pid), &st); err == nil {
		p.UID = int(st.Uid)
	}
	var unread bool
	if p.EpollWatches, unread = epollWatches(pid, epolls); unread {
		p.Unread = append(p.Unread, fmt.Sprintf("pid %d's epoll fdinfo: its watches are left out", pid))
	}
	return p, nil
}

// userTasks counts the tasks whose real uid is uid: what RLIMIT_NPROC
// counts (the user's ucounts, kernel/ucount.c).
func userTasks(uid int) uint64 {
	pids, _ := procfs.Pids()
	var n uint64
	for _, pid := range pids {
		var ruid, threads uint64
		matched := false
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/status", procfs.Root, pid))
		if err != nil {
			continue // exited since
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					ruid, _ = strconv.ParseUint(f[0], 10, 64)
					matched = ruid == uint64(uid)
				}
			} else if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
				threads, _ = strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			}
		}
		if matched {
			n += threads
		}
	}
	return n
}

// epollWatches counts the fds pid's epoll instances (its fds epolls, from
// scanFDs) watch: one "tfd:" line each in the instance's fdinfo
// (fs/eventpoll.c, ep_show_fdinfo).
func epollWatches(pid int, epolls []string) (n uint64, unread bool) {
	for _, fd := range epolls {
		f, err := os.Open(fmt.Sprintf("%s/%d/fdinfo/%s", procfs.Root, pid, fd))
		if err != nil {
			unread = true
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "tfd:") {
				n++
			}
		}
		f.Close()
	}
	return n, unread
}

// readCgroup reads the memory and pids cgroups pid is in, where they cap
// it: cgroup v2's unified hierarchy, or v1's memory and pids controllers.
func readCgroup(pid int) *Cgroup {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procfs.Root, pid))
	if err != nil {
		return nil
	}
	c := &Cgroup{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch controllers := "," + f[1] + ","; {
		case f[0] == "0" && f[1] == "" && unified(): // v2 (a hybrid host's "0::" line has no controllers of ours)
			dir := filepath.Join(CgroupRoot, f[2])
			c.Path = f[2]
			c.MemMax, c.MemCurrent = cgroupNum(dir, "memory.max"), cgroupNum(dir, "memory.current")
			c.SockBytes = memoryStat(dir, "sock")
			c.PidsMax, c.PidsNow = cgroupNum(dir, "pids.max"), cgroupNum(dir, "pids.current")
		case strings.Contains(controllers, ",memory,"):
			dir := filepath.Join(CgroupRoot, "memory", f[2])
			c.Path, c.V1 = f[2], true
			// v1 says "no limit" with the largest page-aligned value.
			if max := cgroupNum(dir, "memory.limit_in_bytes"); max < 1<<60 {
				c.MemMax = max
			}
			c.MemCurrent = cgroupNum(dir, "memory.usage_in_bytes")
			c.SockBytes = cgroupNum(dir, "memory.kmem.tcp.usage_in_bytes")
		case strings.Contains(controllers, ",pids,"):
			dir := filepath.Join(CgroupRoot, "pids", f[2])
			c.PidsMax, c.PidsNow = cgroupNum(dir, "pids.max"), cgroupNum(dir, "pids.current")
		}
	}
	if c.MemMax == 0 && c.PidsMax == 0 {
		return nil
	}
	return c
}

// unified says cgroup v2 is mounted at CgroupRoot itself.
func unified() bool {
	_, err := os.Stat(filepath.Join(CgroupRoot, "cgroup.controllers"))
	return err == nil
}

// cgroupNum reads a cgroup file's number; 0 for "max" or a file missing.
func cgroupNum(dir, name string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// memoryStat reads one key of a v2 cgroup's memory.stat.
func memoryStat(dir, key string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// CgroupRoot is where cgroups are mounted: v2 itself, or v1's controllers
// below it.
var CgroupRoot = "/sys/fs/cgroup"

func joinPorts(ports []uint16) string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = strconv.Itoa(int(p))
	}
	return strings.Join(out, ", ")
}
