package runner

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

// Host is every limit a run can meet, read once before it starts.
type Host struct {
	NoFileSoft     uint64            `json:"nofile_soft"`
	NoFileHard     uint64            `json:"nofile_hard"`
	CanRaiseNoFile bool              `json:"can_raise_nofile"` // CAP_SYS_RESOURCE
	CapSysAdmin    bool              `json:"cap_sys_admin"`    // exempt from fs.file-max
	NrOpen         int64             `json:"nr_open"`
	FileMax        int64             `json:"file_max"`
	FilesOpen      int64             `json:"files_open"`
	PortLo         int               `json:"port_lo"`
	PortHi         int               `json:"port_hi"`
	Somaxconn      int64             `json:"somaxconn"`
	SynBacklog     int64             `json:"tcp_max_syn_backlog"`
	ConntrackMax   int64             `json:"conntrack_max"`   // 0 when nf_conntrack is not loaded
	ConntrackCount int64             `json:"conntrack_count"` // entries now
	TCPMemPages    [3]int64          `json:"tcp_mem_pages"`   // net.ipv4.tcp_mem
	TCPRmem        [3]int64          `json:"tcp_rmem"`        // min, default, max bytes
	TCPWmem        [3]int64          `json:"tcp_wmem"`
	Mem            procfs.Meminfo    `json:"meminfo"`
	SlabObjSize    map[string]uint64 `json:"slab_object_size"` // nil when /proc/slabinfo is unreadable
	Root           bool              `json:"root"`
}

// perConnCaches are the slab caches one loopback connection allocates on each
// end: the sock, its inode (sock_alloc), the file's dentry and struct file
// (sock_alloc_file), and the epoll item that watches it.
var perConnCaches = []string{"TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi"}

// ReadHost reads the limits from /proc and getrlimit.
func ReadHost() (Host, error) {
	var h Host
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return h, os.NewSyscallError("getrlimit", err)
	}
	h.NoFileSoft, h.NoFileHard = lim.Cur, lim.Max
	h.Root = os.Geteuid() == 0
	h.CanRaiseNoFile = hasCap(unix.CAP_SYS_RESOURCE)
	h.CapSysAdmin = hasCap(unix.CAP_SYS_ADMIN)
	var err error
	if h.NrOpen, err = readSysctlInt("fs.nr_open"); err != nil {
		return h, err
	}
	if h.FileMax, err = readSysctlInt("fs.file-max"); err != nil {
		return h, err
	}
	if nr, err := sysctl.Read("fs.file-nr"); err == nil {
		h.FilesOpen, _ = strconv.ParseInt(strings.Fields(nr)[0], 10, 64)
	}
	if h.PortLo, h.PortHi, err = ReadPortRange(); err != nil {
		return h, err
	}
	if h.Somaxconn, err = readSysctlInt("net.core.somaxconn"); err != nil {
		return h, err
	}
	if h.SynBacklog, err = readSysctlInt("net.ipv4.tcp_max_syn_backlog"); err != nil {
		return h, err
	}
	for key, dst := range map[string]*[3]int64{"net.ipv4.tcp_mem": &h.TCPMemPages, "net.ipv4.tcp_rmem": &h.TCPRmem, "net.ipv4.tcp_wmem": &h.TCPWmem} {
		if v, err := sysctl.Read(key); err == nil {
			for i, f := range strings.Fields(v) {
				if i < 3 {
					dst[i], _ = strconv.ParseInt(f, 10, 64)
				}
			}
		}
	}
	// nf_conntrack is optional; its sysctls exist only while it is loaded.
	h.ConntrackMax, _ = readSysctlInt("net.netfilter.nf_conntrack_max")
	h.ConntrackCount, _ = readSysctlInt("net.netfilter.nf_conntrack_count")
	if h.Mem, err = procfs.ReadMeminfo(); err != nil {
		return h, fmt.Errorf("reading meminfo: %w", err)
	}
	if slabs, err := procfs.ReadSlabinfo(); err == nil {
		h.SlabObjSize = make(map[string]uint64, len(slabs))
		for name, c := range slabs {
			h.SlabObjSize[name] = c.ObjSize
		}
		// A cache SLUB merged into another is missing from /proc/slabinfo;
		// its sysfs alias still says its size.
		for _, name := range []string{"eventpoll_pwq", "tcp_bind_bucket", "tcp_bind2_bucket", "lsm_file_cache", "lsm_inode_cache"} {
			if _, ok := h.SlabObjSize[name]; !ok {
				if v, err := procfs.ReadInt("/sys/kernel/slab/" + name + "/slab_size"); err == nil {
					h.SlabObjSize[name] = uint64(v)
				}
			}
		}
	}
	return h, nil
}

// ReadPortRange reads net.ipv4.ip_local_port_range.
func ReadPortRange() (lo, hi int, err error) {
	v, err := sysctl.Read("net.ipv4.ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(v, "%d %d", &lo, &hi); err != nil {
		return 0, 0, fmt.Errorf("parsing ip_local_port_range %q: %w", v, err)
	}
	return lo, hi, nil
}

func readSysctlInt(key string) (int64, error) {
	v, err := sysctl.Read(key)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// hasCap reads the effective capability set from /proc/self/status.
func hasCap(c int) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<c) != 0
		}
	}
	return false
}

// KernelBytesPerConn estimates the unswappable kernel memory of one loopback
// connection (two sockets) from slab object sizes, and says where they came from.
func (h *Host) KernelBytesPerConn() (uint64, string) {
	if h.SlabObjSize == nil {
		return 0, "unknown: /proc/slabinfo needs root"
	}
	var per uint64
	var parts []string
	for _, c := range perConnCaches {
		if sz := h.SlabObjSize[c]; sz > 0 {
			per += sz
			parts = append(parts, fmt.Sprintf("%s %d", c, sz))
		}
	}
	return 2 * per, "2 × (" + strings.Join(parts, " + ") + ") B from /proc/slabinfo"
}

// Check is one row of the preflight table.
type Check struct {
	Limit  string `json:"limit"`
	Value  string `json:"value"`
	Needs  string `json:"needs"`
	Action string `json:"action"`
	OK     bool   `json:"ok"`
	Note   string `json:"note,omitempty"`
}

// Preflight computes, before anything is opened, every limit the run will
// meet and what will be done about each.
func Preflight(h Host, p Plan, want Tuning, reserve uint64, noTune bool) []Check {
	n := int64(p.Conns)
	var out []Check

	perProc := int64(p.ConnsPerWorker)
	c := Check{
		Limit: "fds per process",
		Value: fmt.Sprintf("RLIMIT_NOFILE %d soft / %d hard; each worker %d", h.NoFileSoft, h.NoFileHard, p.NoFile),
		Needs: fmt.Sprintf("%s sockets (one fd each, client and server)", units.Count(2*n)),
	}
	capacity := int64(p.ClientWorkers) * perProc
	c.OK = capacity >= n
	if c.OK {
		c.Action = fmt.Sprintf("shard over %d client + %d server workers of %s sockets each", p.ClientWorkers, p.ServerWorkers, units.Count(perProc))
	} else {
		c.Action = fmt.Sprintf("binds at %s: %d workers per side × %s sockets", units.Count(capacity), p.ClientWorkers, units.Count(perProc))
	}
	out = append(out, c)

	need := 2*n + h.FilesOpen + 64*int64(p.ClientWorkers+p.ServerWorkers)
	c = Check{Limit: "fs.file-max", Value: units.Count(h.FileMax), Needs: units.Count(need) + " open files", OK: need <= h.FileMax || h.CapSysAdmin}
	switch {
	case need <= h.FileMax:
		c.Action = "ok"
	case h.CapSysAdmin:
		// alloc_empty_file() (fs/file_table.c) skips max_files for CAP_SYS_ADMIN.
		c.Action = "ok: root may open files past fs.file-max"
	default:
		c.Action = fmt.Sprintf("binds near %s connections (ENFILE)", units.Count((h.FileMax-h.FilesOpen)/2))
	}
	out = append(out, c)

	ports := int64(len(p.Sources)) * int64(p.PortsPerSource)
	c = Check{
		Limit: "source ports",
		Value: fmt.Sprintf("ip_local_port_range %d–%d (%s per address)", want.PortLo, want.PortHi, units.Count(int64(p.PortsPerSource))),
		Needs: units.Count(n) + " (address, port) pairs to one server port",
		OK:    ports >= n,
	}
	how := "given"
	if p.AutoSources {
		how = "automatic, from 127.1.0.1"
	}
	if c.OK {
		c.Action = fmt.Sprintf("%d source addresses (%s): %s pairs", len(p.Sources), how, units.Count(ports))
	} else {
		c.Action = fmt.Sprintf("binds at %s: %d source addresses × %s ports", units.Count(ports), len(p.Sources), units.Count(int64(p.PortsPerSource)))
	}
	out = append(out, c)

	c = Check{
		Limit: "accept backlog",
		Value: fmt.Sprintf("somaxconn %d, tcp_max_syn_backlog %d", h.Somaxconn, h.SynBacklog),
		Needs: fmt.Sprintf("≥ %d (connects in flight)", want.Backlog),
		OK:    h.Somaxconn >= want.Backlog && h.SynBacklog >= want.Backlog,
	}
	switch {
	case c.OK:
		c.Action = "ok"
	case noTune:
		c.Action = "left as is (--no-tune): expect SYN drops and 1 s retransmits"
	default:
		c.Action = fmt.Sprintf("raise both to %d for the run", want.Backlog)
	}
	out = append(out, c)

	if h.ConntrackMax > 0 && h.ConntrackCount > 0 {
		c = Check{Limit: "conntrack", Value: fmt.Sprintf("nf_conntrack_max %s, %s in use", units.Count(h.ConntrackMax), units.Count(h.ConntrackCount)),
			Needs: units.Count(n) + " entries if loopback is tracked", OK: h.ConntrackMax-h.ConntrackCount >= n}
		c.Action = "ok"
		if !c.OK {
			c.Action = fmt.Sprintf("binds near %s if loopback is tracked", units.Count(h.ConntrackMax-h.ConntrackCount))
		}
		out = append(out, c)
	}

	per, src := h.KernelBytesPerConn()
	avail := int64(h.Mem.MemAvailable) - int64(reserve)
	c = Check{Limit: "memory", Value: fmt.Sprintf("MemAvailable %s, reserve %s", units.Bytes(h.Mem.MemAvailable), units.Bytes(reserve))}
	if per == 0 {
		c.Needs, c.OK, c.Action = "unknown", true, "the reserve still guards the run"
		c.Note = "kernel bytes per connection: " + src
	} else {
		c.Needs = fmt.Sprintf("≈ %s (%s per connection)", units.Bytes(uint64(n)*per), units.Bytes(per))
		c.Note = "kernel bytes per connection: " + src
		c.OK = avail > 0 && uint64(avail) >= uint64(n)*per
		if c.OK {
			c.Action = "ok"
		} else {
			c.Action = fmt.Sprintf("the reserve stops the run near %s connections", units.Count(max(0, avail)/int64(per)))
		}
	}
	out = append(out, c)
	return out
}
