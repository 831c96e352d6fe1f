package procfs

// The zones' watermarks and free pages (/proc/zoneinfo): where kswapd
// wakes, where allocations reclaim for themselves, and where the OOM
// killer comes.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Watermarks sums the zones' min and low free-page watermarks
// (/proc/zoneinfo), in bytes: below low kswapd reclaims; at min an
// allocation reclaims itself or, outside atomic reserves, fails.
func Watermarks() (min, low uint64, err error) {
	err = scanLines(Root+"/zoneinfo", func(line string) error {
		f := strings.Fields(line)
		if len(f) != 2 || (f[0] != "min" && f[0] != "low") {
			return nil
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("zoneinfo %s: %w", f[0], err)
		}
		if f[0] == "min" {
			min += v
		} else {
			low += v
		}
		return nil
	})
	page := uint64(os.Getpagesize())
	return min * page, low * page, err
}

// normalZone is ZONE_NORMAL's index in a zone's protection array, the zone
// a kernel allocation (GFP_KERNEL, a socket's slab) asks for first.
const normalZone = 2

// KernelHeadroom is what a kernel allocation can take before kswapd starts
// reclaiming: each zone's free pages above its low watermark and the
// lowmem_reserve that zone keeps against ZONE_NORMAL allocations falling
// back to it (zone_watermark_ok(): free > mark + lowmem_reserve). Free pages
// on per-CPU lists are left out: the watermarks do not see them.
func KernelHeadroom() (uint64, error) {
	var total, free, low uint64
	var inZone bool
	flush := func() {
		if inZone {
			total += free - min(free, low)
		}
		free, low = 0, 0
	}
	err := scanLines(Root+"/zoneinfo", func(line string) error {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "Node":
			flush()
			inZone = true
		case len(f) == 3 && f[0] == "pages" && f[1] == "free":
			free, _ = strconv.ParseUint(f[2], 10, 64)
		case len(f) == 2 && f[0] == "low":
			v, _ := strconv.ParseUint(f[1], 10, 64)
			low += v
		case len(f) > 1 && f[0] == "protection:":
			p := strings.Trim(strings.Join(f[1:], ""), "()")
			if parts := strings.Split(p, ","); len(parts) > normalZone {
				v, _ := strconv.ParseUint(parts[normalZone], 10, 64)
				low += v
			}
		}
		return nil
	})
	flush()
	return total * uint64(os.Getpagesize()), err
}

// KernelAvailable is what kernel allocations (ZONE_NORMAL first, falling
// back) can still get before the page allocator gives up on them: each
// zone's free pages above its min watermark and the lowmem_reserve it keeps
// against ZONE_NORMAL allocations, and its file pages, which reclaim can
// free. Without swap, anonymous pages stay; past this the OOM killer comes.
// MemAvailable is no guide there: it counts free pages in a zone that
// kernel allocations may not reach (a smaller machine's huge pages taken
// from ZONE_NORMAL leave DMA32 free behind its reserve).
func KernelAvailable() (uint64, error) {
	var total, free, mark, file uint64
	var inZone bool
	flush := func() {
		if inZone {
			total += free - min(free, mark) + file
		}
		free, mark, file = 0, 0, 0
	}
	err := scanLines(Root+"/zoneinfo", func(line string) error {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "Node":
			flush()
			inZone = true
		case len(f) == 3 && f[0] == "pages" && f[1] == "free":
			free, _ = strconv.ParseUint(f[2], 10, 64)
		case len(f) == 2 && f[0] == "min":
			v, _ := strconv.ParseUint(f[1], 10, 64)
			mark += v
		case len(f) == 2 && (f[0] == "nr_zone_inactive_file" || f[0] == "nr_zone_active_file"):
			v, _ := strconv.ParseUint(f[1], 10, 64)
			file += v
		case len(f) > 1 && f[0] == "protection:":
			p := strings.Trim(strings.Join(f[1:], ""), "()")
			if parts := strings.Split(p, ","); len(parts) > normalZone {
				v, _ := strconv.ParseUint(parts[normalZone], 10, 64)
				mark += v
			}
		}
		return nil
	})
	flush()
	return total * uint64(os.Getpagesize()), err
}
