// Package procfs reads the /proc files c10mprobe checks its numbers against:
// meminfo, slabinfo, sockstat, netstat and smaps_rollup. Each reader parses
// one file once; nothing here caches.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Root is where proc is mounted; tests point it at recorded files.
var Root = "/proc"

// Meminfo holds the /proc/meminfo fields the tool uses, in bytes.
type Meminfo struct {
	MemTotal     uint64 `json:"mem_total"`
	MemFree      uint64 `json:"mem_free"`
	MemAvailable uint64 `json:"mem_available"`
	Buffers      uint64 `json:"buffers"`
	Cached       uint64 `json:"cached"`
	SwapCached   uint64 `json:"swap_cached"`
	Writeback    uint64 `json:"writeback"` // pages being written, swap's included
	AnonPages    uint64 `json:"anon_pages"`
	ActiveFile   uint64 `json:"active_file"`
	InactiveFile uint64 `json:"inactive_file"`
	KernelStack  uint64 `json:"kernel_stack"`
	Slab         uint64 `json:"slab"`
	SReclaimable uint64 `json:"sreclaimable"`
	SUnreclaim   uint64 `json:"sunreclaim"`
	PageTables   uint64 `json:"page_tables"`
	SwapTotal    uint64 `json:"swap_total"`
	SwapFree     uint64 `json:"swap_free"`
	Percpu       uint64 `json:"percpu"`
	Mlocked      uint64 `json:"mlocked"`
	PCPFree      uint64 `json:"pcp_free"` // free pages on per-CPU lists (zoneinfo), not in MemFree
	// Huge pages: the pool's size in pages, a page's size, and the bytes
	// all pools hold (Hugetlb): memory no one else can use.
	HugePagesTotal uint64 `json:"hugepages_total"`
	HugePageSize   uint64 `json:"hugepagesize"`
	Hugetlb        uint64 `json:"hugetlb"`
}

// Used is memory in use, page cache aside: MemTotal less free pages (per-CPU
// lists included), Buffers and Cached, as the ledger counts growth.
func (m Meminfo) Used() int64 {
	return int64(m.MemTotal) - int64(m.MemFree+m.PCPFree) - int64(m.Buffers) - int64(m.Cached)
}

// Spare is memory a run can still take without the kernel reclaiming what it
// cannot: free pages (per-CPU lists included) and the file page cache.
// MemAvailable also counts SReclaimable, but the dentries and inodes of open
// sockets are pinned: a million-connection run showed MemAvailable 6 GiB with
// 0.3 GiB free, in reclaim, and then the OOM killer.
func (m Meminfo) Spare() uint64 {
	return min(m.MemAvailable, m.MemFree+m.PCPFree+m.ActiveFile+m.InactiveFile)
}

// MemoryStall reads the time every task waited for memory since boot
// ("full total=" of /proc/pressure/memory, PSI, Linux 4.20); ok is false
// where PSI is off.
func MemoryStall() (full time.Duration, ok bool) {
	err := scanLines(Root+"/pressure/memory", func(line string) error {
		rest, found := strings.CutPrefix(line, "full ")
		if !found {
			return nil
		}
		for _, f := range strings.Fields(rest) {
			if v, is := strings.CutPrefix(f, "total="); is {
				us, err := strconv.ParseUint(v, 10, 64)
				full, ok = time.Duration(us)*time.Microsecond, err == nil
			}
		}
		return nil
	})
	return full, ok && err == nil
}

// SwappedOut is swap holding pages that are no longer in RAM, or are on
// their way out: swap in use less the swap cache that is not being written.
// Those pages have a copy in swap and one in RAM (written out and not yet
// freed, or read back in), and reclaim drops them without writing anything;
// under a fast run they held a gigabyte of a 2 GiB swap at its end (8 GiB
// machine with a 3 GiB ballast, 2026-12-06).
func (m Meminfo) SwappedOut() uint64 {
	used := m.SwapTotal - min(m.SwapTotal, m.SwapFree)
	return used - min(used, m.SwapCacheClean())
}

// SwapCacheClean is the swap cache less what is still being written
// (Writeback, which counts file pages too: an upper bound on swap's).
func (m Meminfo) SwapCacheClean() uint64 {
	return m.SwapCached - min(m.SwapCached, m.Writeback)
}

// Swappable is the anonymous memory swap could take: all of it less what
// is locked in RAM (a --machine-mem run's own processes).
func (m Meminfo) Swappable() uint64 { return m.AnonPages - min(m.AnonPages, m.Mlocked) }

// ReadMeminfo parses /proc/meminfo.
func ReadMeminfo() (Meminfo, error) {
	var m Meminfo
	fields := map[string]*uint64{
		"MemTotal": &m.MemTotal, "MemFree": &m.MemFree, "MemAvailable": &m.MemAvailable,
		"Buffers": &m.Buffers, "Cached": &m.Cached, "SwapCached": &m.SwapCached, "Writeback": &m.Writeback,
		"AnonPages": &m.AnonPages, "KernelStack": &m.KernelStack,
		"Active(file)": &m.ActiveFile, "Inactive(file)": &m.InactiveFile,
		"Slab": &m.Slab, "SReclaimable": &m.SReclaimable, "SUnreclaim": &m.SUnreclaim,
		"PageTables": &m.PageTables, "SwapTotal": &m.SwapTotal, "SwapFree": &m.SwapFree,
		"Percpu": &m.Percpu, "Mlocked": &m.Mlocked, "HugePages_Total": &m.HugePagesTotal, "Hugepagesize": &m.HugePageSize, "Hugetlb": &m.Hugetlb,
	}
	err := scanLines(Root+"/meminfo", func(line string) error {
		name, rest, ok := strings.Cut(line, ":")
		dst := fields[name]
		if !ok || dst == nil {
			return nil
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return fmt.Errorf("meminfo line %q has no value", line)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("meminfo %s: %w", name, err)
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		*dst = v
		return nil
	})
	if err == nil {
		m.PCPFree, err = PCPFreeBytes()
	}
	return m, err
}

// SlabCache is one line of /proc/slabinfo.
type SlabCache struct {
	ActiveObjs uint64 `json:"active_objs"`
	NumObjs    uint64 `json:"num_objs"`
	ObjSize    uint64 `json:"objsize"`
	// A slab's geometry: the objects one holds, in pages of its own.
	ObjPerSlab   uint64 `json:"objperslab"`
	PagesPerSlab uint64 `json:"pagesperslab"`
}

// PageShare is what an object costs its cache in pages: a slab's pages
// over the objects it holds (TCP on x86-64: 13 of 2,368 B in 8 pages,
// 2,520 B each). 0 where slabinfo gives no geometry.
func (c SlabCache) PageShare() uint64 {
	if c.ObjPerSlab == 0 {
		return 0
	}
	return c.PagesPerSlab * uint64(os.Getpagesize()) / c.ObjPerSlab
}

// ReadSlabinfo parses /proc/slabinfo (version 2.1), keyed by cache name.
// Reading it needs root.
func ReadSlabinfo() (map[string]SlabCache, error) {
	caches := make(map[string]SlabCache)
	err := scanLines(Root+"/slabinfo", func(line string) error {
		if strings.HasPrefix(line, "slabinfo -") || strings.HasPrefix(line, "#") {
			return nil
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil
		}
		var c SlabCache
		var err error
		if c.ActiveObjs, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return fmt.Errorf("slabinfo %s: %w", f[0], err)
		}
		if c.NumObjs, err = strconv.ParseUint(f[2], 10, 64); err != nil {
			return fmt.Errorf("slabinfo %s: %w", f[0], err)
		}
		if c.ObjSize, err = strconv.ParseUint(f[3], 10, 64); err != nil {
			return fmt.Errorf("slabinfo %s: %w", f[0], err)
		}
		if len(f) >= 6 {
			c.ObjPerSlab, _ = strconv.ParseUint(f[4], 10, 64)
			c.PagesPerSlab, _ = strconv.ParseUint(f[5], 10, 64)
		}
		caches[f[0]] = c
		return nil
	})
	return caches, err
}

// ReadKeyed parses the two-line "Prefix: names\nPrefix: values" layout of
// /proc/net/netstat and /proc/net/snmp into prefix → name → value.
func ReadKeyed(path string) (map[string]map[string]int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]int64)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		p1, names, _ := strings.Cut(lines[i], ":")
		p2, values, _ := strings.Cut(lines[i+1], ":")
		if p1 != p2 {
			return nil, fmt.Errorf("%s: header %q and values %q do not pair", path, p1, p2)
		}
		n, v := strings.Fields(names), strings.Fields(values)
		if len(n) != len(v) {
			return nil, fmt.Errorf("%s: %s has %d names and %d values", path, p1, len(n), len(v))
		}
		row := make(map[string]int64, len(n))
		for j := range n {
			x, err := strconv.ParseInt(v[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s %s.%s: %w", path, p1, n[j], err)
			}
			row[n[j]] = x
		}
		out[p1] = row
	}
	return out, nil
}

// ListenCounters are the accept-queue drop counters from TcpExt.
type ListenCounters struct {
	Overflows int64 `json:"listen_overflows"`
	Drops     int64 `json:"listen_drops"`
	// SoftnetDropped are packets the kernel dropped because a CPU's input
	// backlog was full (net.core.netdev_max_backlog): /proc/net/softnet_stat's
	// second column, every CPU's. Loopback and veth deliver through it.
	SoftnetDropped int64 `json:"softnet_dropped"`
}

// ReadListenCounters reads ListenOverflows and ListenDrops from /proc/net/netstat.
func ReadListenCounters() (ListenCounters, error) {
	k, err := ReadKeyed(Root + "/net/netstat")
	if err != nil {
		return ListenCounters{}, err
	}
	ext := k["TcpExt"]
	c := ListenCounters{Overflows: ext["ListenOverflows"], Drops: ext["ListenDrops"]}
	err = scanLines(Root+"/net/softnet_stat", func(line string) error {
		if f := strings.Fields(line); len(f) >= 2 {
			v, err := strconv.ParseInt(f[1], 16, 64)
			if err != nil {
				return fmt.Errorf("softnet_stat: %w", err)
			}
			c.SoftnetDropped += v
		}
		return nil
	})
	return c, err
}

// Sockstat is the TCP line of /proc/net/sockstat; Mem is in pages.
type Sockstat struct {
	TCPInUse    int64 `json:"tcp_inuse"`
	TCPOrphan   int64 `json:"tcp_orphan"`
	TCPTimeWait int64 `json:"tcp_tw"`
	TCPAlloc    int64 `json:"tcp_alloc"`
	TCPMemPages int64 `json:"tcp_mem_pages"`
}

// ReadSockstat parses /proc/net/sockstat.
func ReadSockstat() (Sockstat, error) {
	var s Sockstat
	err := scanLines(Root+"/net/sockstat", func(line string) error {
		rest, ok := strings.CutPrefix(line, "TCP: ")
		if !ok {
			return nil
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return fmt.Errorf("sockstat TCP %s: %w", f[i], err)
			}
			switch f[i] {
			case "inuse":
				s.TCPInUse = v
			case "orphan":
				s.TCPOrphan = v
			case "tw":
				s.TCPTimeWait = v
			case "alloc":
				s.TCPAlloc = v
			case "mem":
				s.TCPMemPages = v
			}
		}
		return nil
	})
	return s, err
}

// Pss returns the proportional set size of a process in bytes, from
// smaps_rollup (Linux ≥ 4.14), so text shared by re-executed workers counts once.
func Pss(pid int) (uint64, error) {
	var pss uint64
	found := false
	err := scanLines(fmt.Sprintf("%s/%d/smaps_rollup", Root, pid), func(line string) error {
		rest, ok := strings.CutPrefix(line, "Pss:")
		if !ok {
			return nil
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("smaps_rollup Pss: %w", err)
		}
		pss, found = v*1024, true
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("no Pss line in smaps_rollup of pid %d", pid)
	}
	return pss, err
}

// ReadVmstat parses /proc/vmstat.
func ReadVmstat() (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := scanLines(Root+"/vmstat", func(line string) error {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			return nil
		}
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("vmstat %s: %w", name, err)
		}
		out[name] = x
		return nil
	})
	return out, err
}

// ReadInt reads a file holding one integer, such as a sysctl or cgroup file.
func ReadInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
}

// lineBuffers keeps scanLines' buffers between reads: the run's guard and
// sampler read meminfo and zoneinfo every few milliseconds, and a fresh
// 64 KiB each time was most of what the parent allocated (a 200k run's
// heap peaked at 16 MiB on it, raising the runner's PSS a connection).
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 64*1024); return &b }}

func scanLines(path string, fn func(string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := lineBuffers.Get().(*[]byte)
	defer lineBuffers.Put(buf)
	sc := bufio.NewScanner(f)
	sc.Buffer(*buf, 1024*1024)
	for sc.Scan() {
		if err := fn(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// RCUBarrierPath runs rcu_barrier() when written (rcutree.do_rcu_barrier,
// Linux 6.x): an action, not a setting.
var RCUBarrierPath = "/sys/module/rcutree/parameters/do_rcu_barrier"

// SettleRCU waits for every pending RCU callback. Dentries, inodes and files
// are freed by RCU callbacks, which lazy RCU (CONFIG_RCU_LAZY) may hold for
// up to 10 s; until they run, /proc/slabinfo still counts those objects.
// Reports whether the kernel offers the knob (needs root).
func SettleRCU() bool {
	return os.WriteFile(RCUBarrierPath, []byte("1"), 0) == nil
}

// PCPFreeBytes sums the free pages parked on per-CPU page lists
// (/proc/zoneinfo pagesets "count:"). The buddy allocator's NR_FREE_PAGES,
// which MemFree shows, leaves them out; they run to hundreds of MiB after a
// big free, so a growth measured from MemFree alone misses them.
func PCPFreeBytes() (uint64, error) {
	var pages uint64
	err := scanLines(Root+"/zoneinfo", func(line string) error {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "count:")
		if !ok {
			return nil
		}
		v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return fmt.Errorf("zoneinfo count: %w", err)
		}
		pages += v
		return nil
	})
	return pages * uint64(os.Getpagesize()), err
}

// RSS returns a process's resident set size from /proc/PID/statm.
func RSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/statm", Root, pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm of pid %d: %q", pid, data)
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize()), err
}

// OnlineCPUs are the ids of the online CPUs (/sys/devices/system/cpu/online,
// such as "0-3,6"): not runtime.NumCPU, which counts the process's affinity
// mask and not by id.
func OnlineCPUs() ([]int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return ParseCPUList(string(data))
}

// ParseCPUList parses a kernel CPU list: ids and ranges, comma-separated.
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
