package procfs

// The zones' watermarks and free pages (/proc/zoneinfo): where kswapd
// wakes, where allocations reclaim for themselves, and where the OOM
// killer comes.

import (
	"os"
	"strconv"
	"strings"
)

// Watermarks sums the zones' min and low free-page watermarks
// (/proc/zoneinfo), in bytes: below low kswapd reclaims; at min an
// allocation reclaims itself or, outside atomic reserves, fails.
func Watermarks() (min, low uint64, err error) {
	z, err := ReadZoneTotals()
	return z.Min, z.Low, err
}

// ZoneTotals are the zones' figures a prediction reads at one moment, in
// bytes: the watermarks' sums, KernelHeadroom and KernelAvailable.
type ZoneTotals struct {
	Min, Low, Headroom, Available uint64
}

// ReadZoneTotals reads /proc/zoneinfo once for all of ZoneTotals.
func ReadZoneTotals() (ZoneTotals, error) {
	zs, err := zones()
	var t ZoneTotals
	for _, z := range zs {
		t.Min += z.min
		t.Low += z.low
		t.Headroom += z.free - min(z.free, z.low+z.reserve)
		free := z.free + z.pcp
		t.Available += free - min(free, z.min+z.reserve) + z.file
	}
	page := uint64(os.Getpagesize())
	t.Min, t.Low, t.Headroom, t.Available = t.Min*page, t.Low*page, t.Headroom*page, t.Available*page
	return t, err
}

// normalZone is ZONE_NORMAL's index in a zone's protection array, the zone
// a kernel allocation (GFP_KERNEL, a socket's slab) asks for first.
const normalZone = 2

// zone is one /proc/zoneinfo zone, in pages: its free pages, watermarks,
// the lowmem_reserve it keeps against ZONE_NORMAL allocations falling back
// to it, its file LRU pages, and what its per-CPU lists hold above their
// floor. Free pages on those lists are not in "pages free" (NR_FREE_PAGES).
// Since Linux 6.7 the lists tune their own high mark between high_min and
// high_max ("mm: tune PCP high automatically", 51a755c56dc0) and after a big
// free hold hundreds of MiB above high_min (1.2 GiB on this 2-CPU 6.18 host
// after a 4 GiB run, 2026-12-06); under reclaim the mark falls back
// (ZONE_RECLAIM_ACTIVE) and the excess returns to the buddy lists. What a
// list keeps up to its floor refills as it is used, and before 6.7 (no
// high_min) none is counted: counting 6.1's lists let a 2 GiB machine's
// guard stop 3 % later, and its exchange met the OOM killer (one VM-tier run,
// --memory-pressure, 2026-12-06).
type zone struct {
	free, min, low, reserve, file, pcp uint64
}

// zones reads every zone of every node.
func zones() ([]zone, error) {
	var out []zone
	var count uint64 // the per-CPU list being read: its count, until its high_min
	err := scanLines(Root+"/zoneinfo", func(line string) error {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "Node" {
			out = append(out, zone{})
			return nil
		}
		if len(out) == 0 {
			return nil
		}
		z := &out[len(out)-1]
		num := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
		switch {
		case len(f) == 3 && f[0] == "pages" && f[1] == "free":
			z.free = num(f[2])
		case len(f) == 2 && f[0] == "min":
			z.min = num(f[1])
		case len(f) == 2 && f[0] == "low":
			z.low = num(f[1])
		case len(f) == 2 && (f[0] == "nr_zone_inactive_file" || f[0] == "nr_zone_active_file"):
			z.file += num(f[1])
		case len(f) == 2 && f[0] == "count:":
			count = num(f[1])
		case len(f) == 2 && f[0] == "high_min:":
			z.pcp += count - min(count, num(f[1]))
			count = 0
		case len(f) > 1 && f[0] == "protection:":
			p := strings.Trim(strings.Join(f[1:], ""), "()")
			if parts := strings.Split(p, ","); len(parts) > normalZone {
				z.reserve = num(parts[normalZone])
			}
		}
		return nil
	})
	return out, err
}

// KernelHeadroom is what a kernel allocation can take before kswapd starts
// reclaiming: each zone's free pages above its low watermark and the
// lowmem_reserve that zone keeps against ZONE_NORMAL allocations falling
// back to it (zone_watermark_ok(): free > mark + lowmem_reserve). Free pages
// on per-CPU lists are left out: the watermarks do not see them.
func KernelHeadroom() (uint64, error) {
	z, err := ReadZoneTotals()
	return z.Headroom, err
}

// KernelAvailable is what kernel allocations (ZONE_NORMAL first, falling
// back) can still get before the page allocator gives up on them: each
// zone's free pages above its min watermark and the lowmem_reserve it keeps
// against ZONE_NORMAL allocations, and its file pages, which reclaim can
// free, and what its per-CPU lists hold above their floor (zone), which
// returns under reclaim. Without swap, anonymous pages stay; past this the
// OOM killer comes. MemAvailable is no guide there: it counts free pages in
// a zone that kernel allocations may not reach (a smaller machine's huge
// pages taken from ZONE_NORMAL leave DMA32 free behind its reserve).
func KernelAvailable() (uint64, error) {
	z, err := ReadZoneTotals()
	return z.Available, err
}

// WatermarkScaleFactor is vm.watermark_scale_factor: the gap between a
// zone's watermarks in 1/10,000 of its pages; the kernel's default, 10,
// where it cannot be read.
func WatermarkScaleFactor() uint64 {
	data, err := os.ReadFile(Root + "/sys/vm/watermark_scale_factor")
	if err != nil {
		return 10
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 10
	}
	return v
}

// THPEnabled says whether transparent huge pages are on ("always" or
// "madvise" selected): khugepaged then raises min_free_kbytes. A kernel
// without THP has no such file.
func THPEnabled() bool {
	data, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !strings.Contains(string(data), "[never]")
}
