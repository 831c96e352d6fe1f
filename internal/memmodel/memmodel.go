// Package memmodel is the one model behind every memory prediction the
// tool makes: where connections start pushing pages to swap and where a
// run on a machine stops, from what the machine has left (Room) and what a
// connection costs. The runner projects a --machine-mem run with it from
// /proc as the run goes; predict projects another machine with it from a
// run's recorded Room or from a size. It reads nothing itself.
package memmodel

import (
	"math"

	"github.com/c10mprobe/c10mprobe/internal/limit"
)

// Ends are where a projection stops: a run's guards, or the machine's own
// end.
type Ends struct {
	// SwapShare is the share of swap in use that ends it.
	SwapShare float64 `json:"swap_share"`
	// Without swap, what kernel allocations must still be able to get:
	// MarginFixed, and MarginPerConn for each connection held.
	MarginFixed   uint64 `json:"margin_fixed_bytes"`
	MarginPerConn uint64 `json:"margin_per_connection_bytes"`
}

// Margin is what the guard keeps for kernel allocations at held
// connections, with swap once everything swappable is out, or without.
func (e Ends) Margin(held uint64) uint64 { return e.MarginFixed + held*e.MarginPerConn }

// RunEnds are the machine guard's (runner/host.Machine.Guard): a run into
// swap stops at 95 % of it; one without swap keeps 64 MiB, room for two
// polls of connects at full speed (40,000 a second at 8 KiB is 32 MiB in
// the 100 ms between polls), and 1 KiB a connection held for its exchange,
// whose messages each take an skb (1 KiB of truesize on loopback) until
// read: without it the OOM killer took workers in the exchange after the
// guard had stopped the opening (a 3.6 GiB machine, 2026-12-06).
var RunEnds = Ends{SwapShare: 0.95, MarginFixed: 64 << 20, MarginPerConn: 1 << 10}

// MachineEnds are the machine's own: swap full, or nothing left for
// kernel allocations (the OOM killer).
var MachineEnds = Ends{SwapShare: 1}

// Room is a machine's memory as connections will meet it, in bytes.
type Room struct {
	// Headroom is what kernel allocations get before kswapd wakes and
	// swapping begins: each zone's free pages above its low watermark and
	// the lowmem reserve it keeps against ZONE_NORMAL allocations.
	Headroom uint64 `json:"headroom_bytes"`
	// File is page cache, which kswapd reclaims before it swaps much: on a
	// 4 GiB machine 290 MiB of it went before the first 2 MiB of swap
	// (2026-12-06, /proc/meminfo each second through a --machine-mem run).
	File uint64 `json:"file_bytes"`
	// Available is what kernel allocations can get before the page
	// allocator gives up on them: free pages above the min watermarks and
	// reserves, page cache and the Slab that reclaim frees. It matters
	// without swap, where anonymous pages stay and past it the OOM killer
	// comes.
	Available uint64 `json:"available_bytes"`
	// Slab is what the shrinkers free with the page cache: dentries and
	// inodes no one holds (procfs.ShrinkableSlab).
	Slab uint64 `json:"shrinkable_slab_bytes,omitempty"`
	// Swappable is the anonymous memory of other programs (a ballast, a
	// desktop, a JVM heap) that swap can take to make room.
	Swappable uint64 `json:"swappable_bytes"`
	Swap      uint64 `json:"swap_bytes"` // the swap's size; 0 for none
}

// Cost is what one more connection takes, both ends, in bytes.
type Cost struct {
	// Pinned cannot be swapped: slab, page tables, queued buffers.
	Pinned float64 `json:"pinned_bytes"`
	// User is the processes' own pages, which swap can take.
	User float64 `json:"user_bytes"`
}

func (c Cost) total() float64 { return c.Pinned + c.User }

// Projection is where more connections meet each end, counted from the
// connections the Room was read at.
type Projection struct {
	SwapStart uint64     `json:"swap_start"` // 0 without swap
	Stop      uint64     `json:"stop"`
	StopBy    limit.Kind `json:"stop_by"`
}

// Project says how many more connections at cost c a machine with room r
// holds before it starts swapping and before it reaches e, in the order
// the machine meets them: with swap, swapping begins once the headroom,
// the page cache and the shrinkable slab are spent, and the end is swap filled to e.SwapShare
// (swap_full) or what kernel allocations can still get, with as much of
// the swappable memory as swap holds pushed out, down to e's margin
// (reclaim_exhausted: past it, on Debian's 6.1 under TCG, the OOM killer
// came at 99.7 % of that end without a margin). Whichever comes first:
// with the guard's margin, reclaim_exhausted mostly, since the margin is
// more than the 5 % of swap the guard leaves. Without swap, anonymous
// pages stay and the end is kernel allocations left with e's margin
// (reclaim_exhausted). The margin counts held connections besides the new
// ones.
func Project(r Room, c Cost, e Ends, held uint64) Projection {
	per := c.total()
	if per <= 0 {
		return Projection{}
	}
	if r.Swap == 0 {
		n := (float64(r.Available) - float64(e.Margin(held))) / (per + float64(e.MarginPerConn))
		return Projection{Stop: count(n), StopBy: limit.ReclaimExhausted}
	}
	ram := float64(r.Headroom + r.File + r.Slab)
	p := Projection{SwapStart: count(ram / per)}
	// Past free pages and page cache every byte a connection adds pushes
	// one out: swap fills at per a connection, but only the swappable part
	// of memory (others' pages, then connections' own) can go. By then
	// allocations have also taken what kswapd's watermark does not see,
	// free pages on the per-CPU lists (in Available): on a test host after
	// many runs they held 1.2 GiB, and a machine predicted to fill its swap
	// at 396,024 ran on, swap never full, to 510,934 (2026-12-07).
	swapFull := (float64(max(r.Available, r.Headroom+r.File+r.Slab)) + e.SwapShare*float64(r.Swap)) / per
	allOut := math.Inf(1)
	if c.Pinned > 0 {
		// What swap can take: the swappable memory, the connections' own
		// pages going with it; or, where there is more of it than swap,
		// swap's size, and the connections' pages then stay. A smaller
		// machine with a 3 GiB ballast and 2 GiB of swap projected to
		// swap full at 762,367 stopped on the margin at 695,574 with
		// every swap slot taken (2026-12-07, docs/smaller-machines.md).
		out, per := float64(r.Swappable), c.Pinned
		if r.Swappable >= r.Swap {
			out, per = float64(r.Swap), c.total()
		}
		allOut = (float64(r.Available) + out - float64(e.Margin(held))) / (per + float64(e.MarginPerConn))
	}
	p.Stop, p.StopBy = count(swapFull), limit.SwapFull
	if allOut < swapFull {
		p.Stop, p.StopBy = count(allOut), limit.ReclaimExhausted
	}
	return p
}

func count(n float64) uint64 {
	if n <= 0 || math.IsNaN(n) {
		return 0
	}
	return uint64(n)
}

// Kernel is what sizes a machine's watermarks besides its memory: the
// sysctl vm.watermark_scale_factor and whether transparent huge pages are
// on (khugepaged runs, "always" or "madvise"), read from the host whose
// kernel the prediction assumes.
type Kernel struct {
	WatermarkScaleFactor uint64 `json:"watermark_scale_factor"`
	THP                  bool   `json:"thp"`
}

// Watermarks are the sums over a machine's zones of the min and low
// watermarks, in bytes, as the kernel sizes them for mem bytes of RAM:
// min_free_kbytes = √(16 × lowmem KiB), between 128 KiB and 256 MiB
// (calculate_min_free_kbytes); with THP, khugepaged raises it to two
// pageblocks a zone plus MIGRATE_PCPTYPES² more, at most 5 % of memory
// (set_recommended_min_free_kbytes); each zone's low watermark is its min
// plus the larger of a quarter of it and watermark_scale_factor/10,000 of
// its pages (__setup_per_zone_wmarks). The zones are x86-64's: DMA and
// DMA32 below 4 GiB, Normal above (a machine past 3 GiB has one, the PCI
// hole taking the rest of the first 4 GiB).
func Watermarks(mem uint64, k Kernel) (minW, lowW uint64) {
	kib := mem >> 10
	minKiB := uint64(math.Sqrt(float64(kib * 16)))
	minKiB = max(128, min(minKiB, 256<<10))
	if k.THP {
		zones := uint64(2)
		if mem > 3<<30 {
			zones = 3
		}
		const pageblockKiB, pcpTypes = 2 << 10, 3
		thp := pageblockKiB * zones * (2 + pcpTypes*pcpTypes)
		minKiB = max(minKiB, min(thp, kib/20))
	}
	minW = minKiB << 10
	return minW, minW + max(minW/4, mem*k.WatermarkScaleFactor/10000)
}

// ForMachine is the Room of a machine of mem bytes of RAM and swap bytes
// of swap, where the system and other programs use used bytes (what
// MemAvailable does not count), swappable of them anonymous.
func ForMachine(mem, swap, used, swappable uint64, k Kernel) Room {
	minW, lowW := Watermarks(mem, k)
	left := func(w uint64) uint64 {
		if mem < used+w {
			return 0
		}
		return mem - used - w
	}
	return Room{Headroom: left(lowW), Available: left(minW), Swappable: swappable, Swap: swap}
}

// Seen is the machine a Room was read on: its RAM and the sums of its
// zones' min and low watermarks.
type Seen struct {
	RAM uint64 `json:"ram_bytes"`
	Min uint64 `json:"min_watermark_bytes"`
	Low uint64 `json:"low_watermark_bytes"`
}

// Resize is room r, read on machine seen, on a machine of mem bytes of RAM
// instead: the same programs and connections in it, mem − seen.RAM more
// (or less) free, and the watermarks the kernel k gives that size in place
// of those seen. mem = seen.RAM with seen's own watermarks gives r back.
func Resize(r Room, seen Seen, mem uint64, k Kernel) Room {
	minW, lowW := Watermarks(mem, k)
	shift := func(v, had, now uint64) uint64 {
		return uint64(max(0, int64(v)+int64(had)-int64(now)+int64(mem)-int64(seen.RAM)))
	}
	r.Headroom = shift(r.Headroom, seen.Low, lowW)
	r.Available = shift(r.Available, seen.Min, minW)
	return r
}

// Reballast is room r with other programs holding now bytes of anonymous
// memory where they held had (a --ballast of another size): that much less
// free, and that much more for swap to take.
func Reballast(r Room, had, now uint64) Room {
	shift := func(v uint64) uint64 { return uint64(max(0, int64(v)+int64(had)-int64(now))) }
	r.Headroom, r.Available = shift(r.Headroom), shift(r.Available)
	r.Swappable = uint64(max(0, int64(r.Swappable)+int64(now)-int64(had)))
	return r
}

// Prediction is a projection and what it was made from, as a run records
// it (summary.json machine.prediction), so that predict --from RUNDIR
// makes the same one, or the same for a machine of another size.
type Prediction struct {
	At   uint64 `json:"at_connections"` // the connections held when the room was read
	Room Room   `json:"room"`
	Cost Cost   `json:"cost"`
	Ends Ends   `json:"ends"`
	// The machine the room was read on: a --machine-mem run's RAM, and its
	// host's watermarks, which huge pages do not resize (a machine of that
	// size has its own: Resize with Kernel).
	Seen       Seen       `json:"seen"`
	Kernel     Kernel     `json:"kernel"`
	Projection Projection `json:"projection"` // from At
}

// On projects again, from At, on a machine of mem bytes of RAM (0: the one
// seen) and swap bytes of swap.
func (p Prediction) On(mem, swap uint64) Projection { return p.OnReballasted(mem, swap, 0, 0) }

// OnReballasted is On with other programs holding now bytes of anonymous
// memory where the run's held had (Reballast), on the resized machine: a
// 3 GiB ballast does not fit the 4 GiB machine a room was read on.
func (p Prediction) OnReballasted(mem, swap, had, now uint64) Projection {
	r := p.Room
	if mem != 0 {
		r = Resize(r, p.Seen, mem, p.Kernel)
	}
	r = Reballast(r, had, now)
	r.Swap = swap
	return Project(r, p.Cost, p.Ends, p.At)
}
