package memmodel

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// The watermarks the model gives this host's size are those its kernel
// set: min_free_kbytes and the zones' sums in /proc/zoneinfo.
func TestWatermarksAreThisKernels(t *testing.T) {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	wsf := procfs.WatermarkScaleFactor()
	data, err := os.ReadFile("/proc/sys/vm/min_free_kbytes")
	if err != nil {
		t.Fatal(err)
	}
	minFree, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	zoneMin, zoneLow, err := procfs.Watermarks()
	if err != nil {
		t.Fatal(err)
	}
	// The machine's memory is MemTotal with any huge page pool in it.
	gotMin, gotLow := Watermarks(m.MemTotal, Kernel{WatermarkScaleFactor: wsf, THP: procfs.THPEnabled()})
	// The kernel sizes from lowmem's free buffer pages, a little below
	// MemTotal; √ halves that difference.
	near := func(got, want uint64) bool { return got > want*97/100 && got < want*103/100 }
	if !near(gotMin, minFree<<10) {
		t.Errorf("min watermark %d B for %d B of RAM; min_free_kbytes says %d B", gotMin, m.MemTotal, minFree<<10)
	}
	// The zones' watermarks may be boosted for a while after pages of one
	// migrate type were stolen for another (watermark_boost_factor), each
	// by the same amount: the gap between low and min is not.
	if !near(gotLow-gotMin, zoneLow-zoneMin) {
		t.Errorf("low − min %d B for %d B of RAM; the zones say %d B", gotLow-gotMin, m.MemTotal, zoneLow-zoneMin)
	}
}

func TestWatermarksBySize(t *testing.T) {
	const gib = 1 << 30
	noTHP := Kernel{WatermarkScaleFactor: 10}
	// √(16 × 8 GiB in KiB) = 11,585 KiB; low adds 0.1 % of memory (8 MiB),
	// more than a quarter of min.
	if minW, lowW := Watermarks(8*gib, noTHP); minW != 11585<<10 || lowW != minW+8*gib/1000 {
		t.Errorf("8 GiB without THP: min %d, low %d", minW, lowW)
	}
	// With THP three zones' pageblocks: 2 MiB × 3 × 11 = 66 MiB.
	if minW, _ := Watermarks(8*gib, Kernel{WatermarkScaleFactor: 10, THP: true}); minW != 66<<20 {
		t.Errorf("8 GiB with THP: min %d, want 66 MiB", minW)
	}
	// 2 GiB: two zones, 44 MiB, under 5 % of memory.
	if minW, _ := Watermarks(2*gib, Kernel{WatermarkScaleFactor: 10, THP: true}); minW != 44<<20 {
		t.Errorf("2 GiB with THP: min %d, want 44 MiB", minW)
	}
	// 16 TiB: √ (512 MiB) is past its 256 MiB cap.
	if minW, _ := Watermarks(16<<40, noTHP); minW != 256<<20 {
		t.Errorf("16 TiB: min %d, want 256 MiB", minW)
	}
}

func TestProjectNamesWhatComesFirst(t *testing.T) {
	const mib = 1 << 20
	c := Cost{Pinned: 4096, User: 0}
	room := Room{Headroom: 400 * mib, Available: 500 * mib, Swappable: 1000 * mib}
	// No swap: what kernel allocations can get, less the margin, at 4 KiB
	// and 1 KiB of margin each.
	p := Project(room, c, RunEnds, 0)
	if want := uint64((500*mib - 64*mib) / (4096 + 1024)); p.StopBy != limit.ReclaimExhausted || p.Stop != want || p.SwapStart != 0 {
		t.Errorf("no swap: %+v, want reclaim_exhausted at %d", p, want)
	}
	// Held connections take margin too.
	if q := Project(room, c, RunEnds, 100000); q.Stop >= p.Stop {
		t.Errorf("100,000 held: stop %d, not below %d", q.Stop, p.Stop)
	}
	// Swap smaller than what could go to it: all of it taken, then the
	// margin, which is more than the 5 % of swap the guard leaves: the
	// margin ends it before swap is 95 % full.
	room.Swap = 200 * mib
	p = Project(room, c, RunEnds, 0)
	if want := uint64((500*mib + 200*mib - 64*mib) / (4096 + 1024)); p.StopBy != limit.ReclaimExhausted || p.Stop != want || p.SwapStart != 400*mib/4096 {
		t.Errorf("200 MiB of swap: %+v, want reclaim_exhausted at %d, swapping from %d", p, want, 400*mib/4096)
	}
	// Swap fills first where a connection costs so much that the margin
	// stays below the 5 % of swap left (256 KiB: one holding its buffers).
	big := Cost{Pinned: 256 << 10}
	wide := Room{Headroom: 490 * mib, Available: 500 * mib, Swappable: 3000 * mib, Swap: 2000 * mib}
	if q, want := Project(wide, big, RunEnds, 0), uint64((500*mib+0.95*2000*mib)/(256<<10)); q.StopBy != limit.SwapFull || q.Stop != want {
		t.Errorf("256 KiB a connection, 2,000 MiB of swap: %+v, want swap_full at %d", q, want)
	}
	// Swap larger than what can go: everything swappable out, then what
	// kernel allocations can get, down to the margin.
	room.Swap = 4000 * mib
	p = Project(room, c, RunEnds, 0)
	if want := uint64((500*mib + 1000*mib - 64*mib) / (4096 + 1024)); p.StopBy != limit.ReclaimExhausted || p.Stop != want {
		t.Errorf("4,000 MiB of swap: %+v, want reclaim_exhausted at %d", p, want)
	}
	// Page cache goes before swap does.
	withFile := room
	withFile.File = 100 * mib
	if q := Project(withFile, c, RunEnds, 0); q.SwapStart != 500*mib/4096 || q.Stop != p.Stop {
		t.Errorf("with 100 MiB of page cache: %+v", q)
	}
	// So do dentries and inodes no one holds (in Available already).
	withSlab := withFile
	withSlab.Slab = 50 * mib
	if q := Project(withSlab, c, RunEnds, 0); q.SwapStart != 550*mib/4096 || q.Stop != p.Stop {
		t.Errorf("with 100 MiB of page cache and 50 MiB of unused dentries: %+v", q)
	}
	// Connections' own user pages can go to swap as well.
	if q := Project(room, Cost{Pinned: 4096, User: 1024}, RunEnds, 0); q.Stop <= p.Stop*4/5 || q.SwapStart >= p.SwapStart {
		t.Errorf("with user pages: %+v against %+v", q, p)
	}
	// The machine's own end: all of swap.
	room.Swap = 200 * mib
	if m := Project(room, c, MachineEnds, 0); m.Stop != (500*mib+200*mib)/4096 || m.StopBy != limit.SwapFull {
		t.Errorf("the machine's end with 200 MiB of swap: %+v", m)
	}
	room.Swap = 0
	if m := Project(room, c, MachineEnds, 0); m.Stop != 500*mib/4096 {
		t.Errorf("the machine's end without swap: %+v, want %d", m, 500*mib/4096)
	}
	if z := Project(Room{}, c, RunEnds, 0); z.Stop != 0 {
		t.Errorf("no room: %+v", z)
	}
}

func TestForMachine(t *testing.T) {
	const gib = 1 << 30
	k := Kernel{WatermarkScaleFactor: 10}
	minW, lowW := Watermarks(8*gib, k)
	r := ForMachine(8*gib, 2*gib, 3*gib, gib, k)
	if r.Headroom != 5*gib-lowW || r.Available != 5*gib-minW || r.Swap != 2*gib || r.Swappable != gib {
		t.Errorf("8 GiB, 3 GiB used: %+v", r)
	}
	if full := ForMachine(gib, 0, 2*gib, 0, k); full.Headroom != 0 || full.Available != 0 {
		t.Errorf("a machine already full: %+v", full)
	}
}

func TestResize(t *testing.T) {
	const gib = 1 << 30
	k := Kernel{WatermarkScaleFactor: 10, THP: true}
	minW, lowW := Watermarks(4*gib, k)
	r := Room{Headroom: gib, Available: gib + gib/4, Swappable: gib / 2, Swap: gib}
	// The machine it was seen on, with the watermarks that size has: itself.
	if got := Resize(r, Seen{RAM: 4 * gib, Min: minW, Low: lowW}, 4*gib, k); got != r {
		t.Errorf("resized to its own size: %+v, want %+v", got, r)
	}
	// Twice the RAM: 4 GiB more free, less what the larger watermarks keep.
	min8, low8 := Watermarks(8*gib, k)
	got := Resize(r, Seen{RAM: 4 * gib, Min: minW, Low: lowW}, 8*gib, k)
	if got.Headroom != gib+4*gib+lowW-low8 || got.Available != gib+gib/4+4*gib+minW-min8 || got.Swappable != r.Swappable || got.Swap != r.Swap {
		t.Errorf("resized to 8 GiB: %+v", got)
	}
	// Smaller than what is in use: nothing left.
	if z := Resize(r, Seen{RAM: 4 * gib, Min: minW, Low: lowW}, 2*gib, k); z.Headroom != 0 || z.Available != 0 {
		t.Errorf("resized to 2 GiB: %+v", z)
	}
}

// A recorded prediction made again on its own machine is the same one.
func TestPredictionOnItsOwnMachine(t *testing.T) {
	const gib = 1 << 30
	p := Prediction{At: 50000, Room: Room{Headroom: gib, Available: gib + gib/8, Swappable: gib / 2, Swap: gib}, Cost: Cost{Pinned: 8192},
		Ends: RunEnds, Seen: Seen{RAM: 3 * gib, Min: 60 << 20, Low: 80 << 20}, Kernel: Kernel{WatermarkScaleFactor: 10, THP: true}}
	p.Projection = Project(p.Room, p.Cost, p.Ends, p.At)
	if got := p.On(0, p.Room.Swap); got != p.Projection {
		t.Errorf("again on its machine: %+v, recorded %+v", got, p.Projection)
	}
	if got := p.On(6*gib, p.Room.Swap); got.Stop <= p.Projection.Stop {
		t.Errorf("on twice the RAM: stop %d, not past %d", got.Stop, p.Projection.Stop)
	}
	if got := p.On(0, 0); got.StopBy != limit.ReclaimExhausted {
		t.Errorf("without swap: %+v", got)
	}
}

// A ballast of another size on a larger machine: the machine is resized
// first, so a ballast larger than the room the run was read with still
// fits the larger machine; the same ballast is the same prediction.
func TestPredictionWithAnotherBallast(t *testing.T) {
	const gib = 1 << 30
	k := Kernel{WatermarkScaleFactor: 10, THP: true}
	p := Prediction{At: 160000, Room: Room{Headroom: gib, Available: gib + gib/16, Swappable: gib, Swap: gib}, Cost: Cost{Pinned: 8448},
		Ends: RunEnds, Seen: Seen{RAM: 4 * gib, Min: 60 << 20, Low: 80 << 20}, Kernel: k}
	if got, want := p.OnReballasted(8*gib, 2*gib, gib, gib), p.On(8*gib, 2*gib); got != want {
		t.Errorf("the run's own ballast: %+v, want %+v", got, want)
	}
	r := Reballast(Resize(p.Room, p.Seen, 8*gib, k), gib, 3*gib)
	r.Swap = 2 * gib
	want := Project(r, p.Cost, p.Ends, p.At)
	if got := p.OnReballasted(8*gib, 2*gib, gib, 3*gib); got != want || got.StopBy != limit.ReclaimExhausted {
		t.Errorf("8 GiB with a 3 GiB ballast: %+v, want %+v (reclaim_exhausted)", got, want)
	}
	// 2 GiB more of ballast takes 2 GiB of the 4 GiB added, less the
	// watermarks: the swap start moves by what is left of the 4 GiB.
	on8 := p.On(8*gib, 2*gib)
	if d := float64(on8.SwapStart-want.SwapStart) * p.Cost.Pinned; d < 1.99*gib || d > 2.01*gib {
		t.Errorf("the 3 GiB ballast moved the swap start by %.0f B, want 2 GiB", d)
	}
	if z := Reballast(p.Room, gib, 3*gib); z.Headroom != 0 || z.Available != 0 || z.Swappable != 3*gib {
		t.Errorf("a 3 GiB ballast in the 4 GiB machine's room: %+v, want nothing free and 3 GiB swappable", z)
	}
}
