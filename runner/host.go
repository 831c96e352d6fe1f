package runner

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"golang.org/x/sys/unix"
)

// Host is every limit a run can meet, read once before it starts.
type Host struct {
	NoFileSoft     uint64 `json:"nofile_soft"`
	NoFileHard     uint64 `json:"nofile_hard"`
	CanRaiseNoFile bool   `json:"can_raise_nofile"` // CAP_SYS_RESOURCE
	CapSysAdmin    bool   `json:"cap_sys_admin"`    // exempt from fs.file-max
	NrOpen         int64  `json:"nr_open"`
	FileMax        int64  `json:"file_max"`
	FilesOpen      int64  `json:"files_open"`
	PortLo         int    `json:"port_lo"`
	PortHi         int    `json:"port_hi"`
	Somaxconn      int64  `json:"somaxconn"`
	SynBacklog     int64  `json:"tcp_max_syn_backlog"`
	// InputBacklog is net.core.netdev_max_backlog, packets a CPU's input
	// queue holds; 0 where this network namespace cannot read it (the
	// kernel shows it in the initial namespace only).
	InputBacklog    int64  `json:"netdev_max_backlog,omitempty"`
	EpollMaxWatches int64  `json:"epoll_max_user_watches"` // per user, one per socket watched
	PidMax          int64  `json:"pid_max"`
	ThreadsMax      int64  `json:"threads_max"`
	NprocSoft       uint64 `json:"nproc_soft"`        // RLIMIT_NPROC
	Tasks           int64  `json:"tasks"`             // threads on the host now (/proc/loadavg)
	EhashEntries    int64  `json:"tcp_ehash_entries"` // buckets of the established hash; 0 where the sysctl is missing (< 6.1)
	// PageReporting: a virtio balloon hands this guest's free pages back
	// to its hypervisor (on, off, unknown), so that a page given back is a
	// host fault at its next first touch. PageReportedKiB is how much
	// since boot where the kernel counts it (a parameter some kernels add
	// to /sys/module/page_reporting; mainline has only
	// page_reporting_order); -1 where it does not.
	PageReporting   string            `json:"page_reporting"`
	PageReportedKiB int64             `json:"page_reported_kib"`
	ConntrackMax    int64             `json:"conntrack_max"`   // 0 when nf_conntrack is not loaded
	ConntrackCount  int64             `json:"conntrack_count"` // entries now
	TCPMemPages     [3]int64          `json:"tcp_mem_pages"`   // net.ipv4.tcp_mem
	TCPRmem         [3]int64          `json:"tcp_rmem"`        // min, default, max bytes
	TCPWmem         [3]int64          `json:"tcp_wmem"`
	Mem             procfs.Meminfo    `json:"meminfo"`
	SlabObjSize     map[string]uint64 `json:"slab_object_size"` // nil when /proc/slabinfo is unreadable
	// SlabPageShare is what an object costs its cache in slab pages
	// (procfs.SlabCache.PageShare): what a connection's objects take of
	// RAM, where a memory cgroup charges SlabObjSize.
	SlabPageShare map[string]uint64 `json:"slab_page_share"`
	Root          bool              `json:"root"`
	// CPUs is the CPUs in this process's affinity mask (sched_getaffinity),
	// which the workers inherit: a run under taskset gets what it allows.
	CPUs int `json:"cpus"`
}

// ReadHost reads the limits from /proc and getrlimit.
func ReadHost() (Host, error) {
	var h Host
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return h, os.NewSyscallError("getrlimit", err)
	}
	h.NoFileSoft, h.NoFileHard = lim.Cur, lim.Max
	h.Root = os.Geteuid() == 0
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		return h, os.NewSyscallError("sched_getaffinity", err)
	}
	h.CPUs = cpus.Count()
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
	h.InputBacklog, _ = readSysctlInt("net.core.netdev_max_backlog")
	for key, dst := range map[string]*[3]int64{"net.ipv4.tcp_mem": &h.TCPMemPages, "net.ipv4.tcp_rmem": &h.TCPRmem, "net.ipv4.tcp_wmem": &h.TCPWmem} {
		if v, err := sysctl.Read(key); err == nil {
			for i, f := range strings.Fields(v) {
				if i < 3 {
					dst[i], _ = strconv.ParseInt(f, 10, 64)
				}
			}
		}
	}
	// net.ipv4.tcp_ehash_entries (Linux 6.1) reads the table's size.
	h.EhashEntries, _ = readSysctlInt("net.ipv4.tcp_ehash_entries")
	h.PageReporting = procfs.FreePageReporting(procfs.VirtioDevices)
	h.PageReportedKiB = -1
	if v, err := procfs.ReadInt("/sys/module/page_reporting/parameters/reported_kib"); err == nil {
		h.PageReportedKiB = v
	}
	if h.EpollMaxWatches, err = readSysctlInt("fs.epoll.max_user_watches"); err != nil {
		return h, err
	}
	if h.PidMax, err = readSysctlInt("kernel.pid_max"); err != nil {
		return h, err
	}
	if h.ThreadsMax, err = readSysctlInt("kernel.threads-max"); err != nil {
		return h, err
	}
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &lim); err != nil {
		return h, os.NewSyscallError("getrlimit", err)
	}
	h.NprocSoft = lim.Cur
	h.Tasks, _ = procfs.Tasks()
	// nf_conntrack is optional; its sysctls exist only while it is loaded.
	h.ConntrackMax, _ = readSysctlInt("net.netfilter.nf_conntrack_max")
	h.ConntrackCount, _ = readSysctlInt("net.netfilter.nf_conntrack_count")
	if h.Mem, err = procfs.ReadMeminfo(); err != nil {
		return h, fmt.Errorf("reading meminfo: %w", err)
	}
	h.SlabObjSize, h.SlabPageShare = slabObjSizes()
	return h, nil
}

// slabObjSizes are the object sizes of the slab caches, by name, and each
// object's share of its slab's pages; nil when /proc/slabinfo is
// unreadable (not root).
func slabObjSizes() (sizes, shares map[string]uint64) {
	slabs, err := procfs.ReadSlabinfo()
	if err != nil {
		return nil, nil
	}
	sizes, shares = make(map[string]uint64, len(slabs)), make(map[string]uint64, len(slabs))
	for name, c := range slabs {
		sizes[name], shares[name] = c.ObjSize, c.PageShare()
	}
	// A cache SLUB merged into another is missing from /proc/slabinfo;
	// its sysfs alias still says its size and geometry.
	for _, name := range append(slabmodel.Charged, "TCPv6") {
		if _, ok := sizes[name]; ok {
			continue
		}
		dir := "/sys/kernel/slab/" + name + "/"
		if v, err := procfs.ReadInt(dir + "slab_size"); err == nil {
			sizes[name] = uint64(v)
		}
		order, err1 := procfs.ReadInt(dir + "order")
		objs, err2 := procfs.ReadInt(dir + "objs_per_slab")
		if err1 == nil && err2 == nil && objs > 0 {
			shares[name] = uint64(os.Getpagesize()<<order) / uint64(objs)
		}
	}
	return sizes, shares
}

// apply sets the field a sysctl of the run stands for, so that the
// preflight, the plan and the analysis see the values in force during the
// run. value has passed sysctl.CheckValue.
func (h *Host) apply(key, value string) {
	n := make([]int64, 0, 3)
	for _, f := range strings.Fields(value) {
		v, _ := strconv.ParseInt(f, 10, 64)
		n = append(n, v)
	}
	three := func(dst *[3]int64) { copy(dst[:], n) }
	switch key {
	case "net.ipv4.ip_local_port_range":
		h.PortLo, h.PortHi = int(n[0]), int(n[1])
	case "net.core.somaxconn":
		h.Somaxconn = n[0]
	case "net.ipv4.tcp_max_syn_backlog":
		h.SynBacklog = n[0]
	case "net.core.netdev_max_backlog":
		h.InputBacklog = n[0]
	case "net.ipv4.tcp_mem":
		three(&h.TCPMemPages)
	case "net.ipv4.tcp_rmem":
		three(&h.TCPRmem)
	case "net.ipv4.tcp_wmem":
		three(&h.TCPWmem)
	case "fs.file-max":
		h.FileMax = n[0]
	case "fs.nr_open":
		h.NrOpen = n[0]
	case "net.netfilter.nf_conntrack_max":
		h.ConntrackMax = n[0]
	case "fs.epoll.max_user_watches":
		h.EpollMaxWatches = n[0]
	case "kernel.pid_max":
		h.PidMax = n[0]
	case "kernel.threads-max":
		h.ThreadsMax = n[0]
	}
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
// connection (two sockets) of the family from slab object sizes, and says
// where they came from.
func (h *Host) KernelBytesPerConn(f Family) (uint64, string) {
	if h.SlabObjSize == nil {
		return 0, "unknown: /proc/slabinfo needs root"
	}
	sock := "TCP"
	if f == FamilyInet6 {
		sock = "TCPv6"
	}
	return slabmodel.KernelBytes(h.SlabObjSize, h.SlabPageShare, sock)
}
