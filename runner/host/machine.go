package host

// --machine-mem SIZE: the run behaves as on a machine with SIZE of RAM,
// where everything counts (both sockets of every connection, the kernel's
// own allocations, page cache), as on the article's 8 GB desktop. The rest
// of RAM is reserved as huge pages: the hugetlb pool takes it from the page
// allocator, and nothing but a hugetlbfs mapping can use it. A memory
// cgroup would not do: the server's sock is allocated in softirq and
// charged to none. Memory hot-unplug would shrink MemTotal itself, but a
// block of ZONE_NORMAL stayed "going-offline" here until interrupted
// (unmovable kernel pages in it); huge pages are taken in half a second.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/memmodel"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

// hugePagesKey is the sysctl that sizes the default huge page pool.
const hugePagesKey = "vm.nr_hugepages"

// HugePagesName names the smaller machine's change.
const HugePagesName = "huge pages"

// machineSlack is how far above --machine-mem what huge pages leave may be:
// the pool takes whole huge pages, and on a host that has run for a while
// unmovable pages (page tables, slab) keep some 2 MiB runs from it even
// after compaction (how many: docs/measurements.md, "Figures behind the code"). The run
// says what it left (summary machine.left_bytes).
const machineSlack = 1.10

// machinePressureStop is the PSI full share that stops a run into swap.
// Reclaim stalls are the experiment there: at the host's 10 % a run stops
// with almost nothing swapped, the kernel still scanning page cache and
// pinned dentries (docs/measurements.md, "Figures behind the code"); at 40 % it is a
// machine near freezing, the article's.
const machinePressureStop = 40.0

// Machine is a --machine-mem run's smaller machine: the huge pages that
// make it, the prediction of where it swaps and stops, and its guard.
type Machine struct {
	Size     uint64 // --machine-mem
	Ballast  uint64 // --ballast, which must fit in it
	Reserve  uint64 // --reserve
	Journal  *sysctl.Journal
	Log      io.Writer
	Pressure *Pressure

	conns int    // the run's, for the prediction
	left  uint64 // MemTotal − Hugetlb once reserved: the machine's RAM
	pages uint64 // huge pages the run reserved
	// locked: the parent keeps the pages it touches in RAM for the run,
	// as its workers do (worker.Config.LockMemory): its guards must not
	// wait on swap to read the machine they guard.
	locked bool
	// The prediction printed before the first connection, from the slab
	// model, and again once the first connections have been measured.
	modelPerConn, perConn         uint64 // kernel and user bytes a connection
	modelSwapStart, modelStop     uint64
	predictSwapStart, predictStop uint64
	calibrated                    bool
	first                         struct { // the count and used memory at the first calibration point
		at   uint64
		used int64
	}
	calibratedOver uint64
	guard          struct {
		minWater uint64 // Σ zones' min watermark
		lastLeft uint64 // what kernel allocations could still get at the last poll (Guard)
	}
	held        uint64 // connections open at the last Calibrate, for the guard's margin
	prediction  *memmodel.Prediction
	pace        pacer // the opening's holds (Pace)
	shrinkSizes procfs.ShrinkSizes
	keeper      keeper
}

// MachineResult is summary.json's machine.
type MachineResult struct {
	MemBytes                  uint64 `json:"mem_bytes"`
	Mechanism                 string `json:"mechanism"`
	HugePages                 uint64 `json:"huge_pages"`
	LeftBytes                 uint64 `json:"left_bytes"` // MemTotal − Hugetlb: the machine as the run had it
	ModelBytesPerConnection   uint64 `json:"model_bytes_per_connection"`
	ModelSwapStartConnections uint64 `json:"model_swap_start_connections"` // printed before the first connection
	ModelConnections          uint64 `json:"model_connections"`
	// The prediction made again from the first connections' measured cost.
	MeasuredBytesPerConnection   uint64               `json:"measured_bytes_per_connection"`
	MeasuredOver                 uint64               `json:"measured_over_connections"`
	PredictedSwapStartConnection uint64               `json:"predicted_swap_start_connections"`
	PredictedConnections         uint64               `json:"predicted_connections"`
	ActualSwapStartConnections   uint64               `json:"actual_swap_start_connections"` // from the time series (analysis)
	ActualConnections            uint64               `json:"actual_connections"`
	StoppedBy                    limit.Kind           `json:"stopped_by"`
	Prediction                   *memmodel.Prediction `json:"prediction,omitempty"`

	// The opening's holds while the machine's tasks stalled on reclaim (Pace).
	OpeningHolds       int     `json:"opening_holds,omitempty"`
	OpeningHeldSeconds float64 `json:"opening_held_seconds,omitempty"`
}

func (ma *Machine) Name() string { return HugePagesName }

// Check refuses a --machine-mem the host cannot be made into: larger than
// the host, or smaller than what is in use (with the ballast) plus the
// reserve.
func (ma *Machine) Check() error {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return err
	}
	if m.HugePageSize == 0 {
		return errors.New("--machine-mem reserves the rest of RAM as huge pages, and this kernel has none (no Hugepagesize in /proc/meminfo)")
	}
	if ma.Size >= m.MemTotal-m.Hugetlb {
		return fmt.Errorf("--machine-mem %s is not below this host's %s of RAM", units.Bytes(ma.Size), units.Bytes(m.MemTotal-m.Hugetlb))
	}
	// Free pages parked on the per-CPU lists are free, though MemAvailable
	// leaves them out: right after a 4 GiB run they held 1.2 GiB, and a
	// matrix cell that followed was refused for memory "in use" that was
	// free (procfs.PCPFreeBytes, 2026-12-06).
	used := m.MemTotal - m.Hugetlb - min(m.MemTotal-m.Hugetlb, m.MemAvailable+m.PCPFree)
	if need := used + ma.Ballast + ma.Reserve; ma.Size < need {
		return fmt.Errorf("--machine-mem %s is smaller than what is in use (%s) plus the ballast (%s) and the reserve (%s): at least %s",
			units.Bytes(ma.Size), units.Bytes(used), units.Bytes(ma.Ballast), units.Bytes(ma.Reserve), units.Bytes(need))
	}
	if os.Geteuid() != 0 {
		return errors.New("--machine-mem sets vm.nr_hugepages, which needs root")
	}
	return nil
}

// Apply reserves huge pages until RAM left is --machine-mem, and checks it.
func (ma *Machine) Apply() error {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return err
	}
	ma.pages = (m.MemTotal - m.Hugetlb - ma.Size) / m.HugePageSize
	want := m.HugePagesTotal + ma.pages
	if err := ma.startKeeper(ma.Journal.Path()); err != nil {
		return err
	}
	for try := 0; ; try++ {
		if try > 0 {
			// Short: an earlier run's sockets may still be queued for
			// freeing behind lazy RCU (up to 10 s), their pages neither
			// free nor movable. Let those callbacks run, then again.
			fmt.Fprintf(ma.Log, "machine: %d of %d huge pages reserved; waiting for RCU frees and compacting, then again\n", m.HugePagesTotal, want)
			procfs.SettleRCU()
		}
		// Free pages in 2 MiB runs: compaction first (an action, not a
		// setting). Each try is journaled: restore writes back each value
		// in turn.
		_ = os.WriteFile("/proc/sys/vm/compact_memory", []byte("1"), 0)
		if _, err := ma.Journal.Set(hugePagesKey, fmt.Sprint(want)); err != nil {
			return err
		}
		if m, err = procfs.ReadMeminfo(); err != nil {
			return err
		}
		ma.left = m.MemTotal - m.Hugetlb
		if float64(ma.left) <= machineSlack*float64(ma.Size) || try == 3 {
			break
		}
	}
	if float64(ma.left) > machineSlack*float64(ma.Size) {
		return fmt.Errorf("--machine-mem %s: only %d of %d huge pages could be reserved (memory too fragmented?), which leaves %s: not that machine",
			units.Bytes(ma.Size), m.HugePagesTotal, want, units.Bytes(ma.left))
	}
	ma.guard.minWater, _, _ = procfs.Watermarks()
	ma.shrinkSizes, _ = procfs.ReadShrinkSizes() // zero, and nothing counted, where slabinfo is unreadable
	ma.locked = unix.Mlockall(unix.MCL_CURRENT|unix.MCL_FUTURE|unix.MCL_ONFAULT) == nil
	fmt.Fprintf(ma.Log, "machine: %s of RAM for the run (%s reserved as %d huge pages of %s; vm.nr_hugepages restored at exit)\n",
		units.Bytes(ma.left), units.Bytes(ma.pages*m.HugePageSize), ma.pages, units.Bytes(m.HugePageSize))
	return nil
}

// Undo gives the huge pages back: the machine's RAM, before a swapoff
// that may need it.
func (ma *Machine) Undo() error {
	if ma.locked {
		_ = unix.Munlockall()
		ma.locked = false
	}
	if err := ma.Journal.RestoreKey(hugePagesKey); err != nil {
		return err // the keeper tries again when this process ends
	}
	ma.stopKeeper()
	return nil
}

// restoreHugePages gives back the huge pages a killed run reserved.
func restoreHugePages(dir string) (string, error) {
	return "", restoreJournal(filepath.Join(dir, rundir.Journal), hugePagesKey)
}

// Predict prints, before the first connection, where swapping
// should begin and where the run should stop, from the slab model: the
// unswappable kernel memory of a connection fills what is free; from the
// low watermark the kernel swaps anonymous pages (the ballast's first) to
// make room, until swap is nearly full.
// kernelPerConn is the slab model's kernel bytes a connection; conns what
// the run opens.
func (ma *Machine) Predict(kernelPerConn uint64, conns int) {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return
	}
	ma.conns = conns
	ma.perConn, ma.modelPerConn = kernelPerConn+userBytesPerConn, kernelPerConn+userBytesPerConn
	ma.predictSwapStart, ma.predictStop = ma.project(m, ma.perConn, 0)
	ma.modelSwapStart, ma.modelStop = ma.predictSwapStart, ma.predictStop
	fmt.Fprintf(ma.Log, "machine: predicted from the slab model's %s a connection: %s\n", units.Bytes(ma.perConn), ma.outlook())
}

// WatermarkKernel is what sizes watermarks on this host's kernel besides
// its memory (memmodel.Watermarks): vm.watermark_scale_factor and whether
// THP is on. predict assumes it for the machine it predicts.
func WatermarkKernel() memmodel.Kernel {
	return memmodel.Kernel{WatermarkScaleFactor: procfs.WatermarkScaleFactor(), THP: procfs.THPEnabled()}
}

// outlook says where the last projection has swapping begin and the run
// stop, and by what.
func (ma *Machine) outlook() string {
	p := ma.prediction
	if p == nil {
		return "no projection"
	}
	if p.Room.Swap == 0 {
		return fmt.Sprintf("without swap the run stops near %s connections, when kernel allocations have only the guard's margin left (%s, and %s a connection)",
			units.Count(ma.predictStop), units.Bytes(p.Ends.MarginFixed), units.Bytes(p.Ends.MarginPerConn))
	}
	by := fmt.Sprintf("swap %.0f %% full", 100*p.Ends.SwapShare)
	if p.Projection.StopBy == limit.ReclaimExhausted {
		by = fmt.Sprintf("everything swappable out, and kernel allocations down to the guard's margin of %s and %s a connection", units.Bytes(p.Ends.MarginFixed), units.Bytes(p.Ends.MarginPerConn))
	}
	// PSI is no memory quantity: the 8 GiB machine with a 3 GiB ballast
	// stalled 20-26 % before this stop with the room for it still there
	// (docs/prediction-matrix.md).
	return fmt.Sprintf("swapping begins near %s connections, and the run stops near %s (%s; %s of anonymous memory can go to %s of swap), or sooner where the machine's tasks stall on swap (PSI), which no memory model predicts",
		units.Count(ma.predictSwapStart), units.Count(ma.predictStop), by, units.Bytes(p.Room.Swappable), units.Bytes(p.Room.Swap))
}

// RoomNow is the machine's memory as more connections will meet it, from
// meminfo m and one read of the zones, as kswapd and the page allocator
// see them, with the zones' sums; headroom reads a live server's machine
// the same way.
func RoomNow(m procfs.Meminfo) (memmodel.Room, procfs.ZoneTotals) {
	z, err := procfs.ReadZoneTotals()
	if err != nil {
		z = procfs.ZoneTotals{Headroom: m.MemFree, Available: m.MemFree + m.ActiveFile + m.InactiveFile}
	}
	// Unused dentries and inodes go under pressure as page cache does, and
	// the guard counts them (kernelLeft).
	sizes, _ := procfs.ReadShrinkSizes()
	slab, _ := procfs.ShrinkableSlab(sizes)
	return memmodel.Room{Headroom: z.Headroom, Available: z.Available + slab, File: m.ActiveFile + m.InactiveFile, Slab: slab,
		Swappable: m.Swappable(), Swap: m.SwapTotal}, z
}

// firstEnd is what the calibration window is sized by: the model's swap
// start, or without swap its stop.
func (ma *Machine) firstEnd() uint64 {
	if ma.prediction != nil && ma.prediction.Room.Swap == 0 {
		return ma.modelStop
	}
	return ma.modelSwapStart
}

// project is where swapping begins and the run stops at per bytes a
// connection, from memory now with held connections open (memmodel).
func (ma *Machine) project(now procfs.Meminfo, per, held uint64) (swapStart, stop uint64) {
	room, z := RoomNow(now)
	p := &memmodel.Prediction{At: held, Room: room, Cost: memmodel.Cost{Pinned: float64(per)}, Ends: memmodel.RunEnds,
		Kernel: WatermarkKernel(),
		Seen:   memmodel.Seen{RAM: ma.left, Min: z.Min, Low: z.Low}}
	p.Projection = memmodel.Project(room, p.Cost, p.Ends, held)
	ma.prediction = p
	left := uint64(ma.conns) - min(uint64(ma.conns), held)
	if room.Swap > 0 {
		swapStart = held + min(left, p.Projection.SwapStart)
	}
	return swapStart, held + min(left, p.Projection.Stop)
}

// The prediction is made again from what connections cost this host
// between two counts before any swapping (without swap, before half the
// stop): the marginal cost, with what an
// agent walking /proc/PID/fd adds and partly filled slab pages in it, and
// the fixed costs of the first connections out of it.
func calibrateFrom(swapStart uint64) uint64 { return max(10000, swapStart/8) }
func calibrateTo(swapStart uint64) uint64   { return max(40000, swapStart/2) }

// Calibrate remakes the prediction from the marginal cost of connections,
// once, projecting from memory as it is at the second count.
func (ma *Machine) Calibrate(established uint64) {
	ma.held = established
	if ma.calibrated || established < calibrateFrom(ma.firstEnd()) {
		return
	}
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return
	}
	if ma.first.at == 0 {
		ma.first.at, ma.first.used = established, m.Used()
		return
	}
	if established < calibrateTo(ma.firstEnd()) {
		return
	}
	ma.calibrated = true
	grown := m.Used() - ma.first.used
	if grown <= 0 {
		return
	}
	ma.perConn = uint64(grown) / (established - ma.first.at)
	ma.predictSwapStart, ma.predictStop = ma.project(m, ma.perConn, established)
	ma.calibratedOver = established
	fmt.Fprintf(ma.Log, "machine: measured %s a connection from %s to %s: %s\n",
		units.Bytes(ma.perConn), units.Count(ma.first.at), units.Count(established), ma.outlook())
}

// userBytesPerConn is the runner's user space a connection (both ends'
// workers), as measured (docs/measurements.md, "Figures behind the code"): the model adds
// it to the slab's.
const userBytesPerConn = 180

// Guard replaces the reserve's guard on a smaller machine, where going into
// swap is the experiment: it stops when swap is nearly full, when every task
// waits on memory (PSI), or when free pages reach the min watermark, below
// which allocations fail.
func (ma *Machine) Guard() (limit.Kind, string) {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return "", ""
	}
	// Swap is spent by the pages it holds that are out of RAM: a page in
	// the swap cache holds a slot, but reclaim frees its RAM without a write.
	if out := m.SwappedOut(); m.SwapTotal > 0 && float64(out) >= memmodel.RunEnds.SwapShare*float64(m.SwapTotal) {
		return limit.SwapFull, fmt.Sprintf("swap is %.0f %% full of pages out of RAM (%s of %s): the kernel has nothing left to push out to make room for socket slab, which cannot be swapped",
			100*float64(out)/float64(m.SwapTotal), units.Bytes(out), units.Bytes(m.SwapTotal))
	}
	// Once what kernel allocations can still get (free above the min
	// watermarks and lowmem reserves, file pages to reclaim, and anonymous
	// pages swap still has room for) is spent, the OOM killer comes,
	// faster than a guard polls: on Debian's 6.1 under TCG, with swap
	// larger than what could go to it, it came before free memory stayed
	// at the min watermark long enough for a poll to see. Stop with a
	// margin.
	// The margin is met where the next poll would find it crossed: at
	// 80,000 connects a second, what a 2 GiB machine's opening took between
	// two polls was 78 MiB, and a guard that waited to see the margin
	// crossed stopped with 55 MiB of its 237 left, 10 % past its calibrated
	// prediction, and its exchange was cut short before the OOM killer
	// (make bench-matrix, 2026-12-07).
	margin := memmodel.RunEnds.Margin(ma.held)
	if avail, out, ok := ma.kernelLeft(m); ok {
		fell := ma.guard.lastLeft - min(ma.guard.lastLeft, avail+out)
		ma.guard.lastLeft = avail + out
		if avail+out <= margin+fell {
			left := "without swap, kernel allocations had " + units.Bytes(avail) + " left"
			if m.SwapTotal > 0 {
				left = fmt.Sprintf("with %s of anonymous memory left that swap could take, kernel allocations had %s left", units.Bytes(out), units.Bytes(avail))
			}
			return limit.ReclaimExhausted, fmt.Sprintf("%s (free pages above the zones' min watermarks and reserves, page cache to reclaim, and dentries and inodes no one holds; the guard's margin is %s, and %s went since its last poll): past it the OOM killer comes",
				left, units.Bytes(margin), units.Bytes(fell))
		}
	}
	if kind, detail := ma.heldTooLong(); kind != "" {
		return kind, detail
	}
	if full, ok := ma.Pressure.Share(); ok && full >= machinePressureStop {
		return limit.MemoryPressure, fmt.Sprintf("every task waited for memory %.0f %% of the last %s (PSI full): the machine is thrashing; stopped before it stalls", full, PressureWindow)
	}
	// Between low and min kswapd reclaims in the background; at min every
	// allocation reclaims for itself, and atomic ones (softirq's socks) dip
	// into the last reserves.
	if free := m.MemFree + m.PCPFree; free <= ma.guard.minWater {
		return limit.MinWatermark, fmt.Sprintf("free memory fell to %s, at the min watermark (%s): allocations now reclaim on their own or fail", units.Bytes(free), units.Bytes(ma.guard.minWater))
	}
	return "", ""
}

// ExchangeGuard is the machine's guard once the opening has stopped: the
// exchange is left to verify what is held while the machine thrashes (that
// is the experiment), but not past half the margin the opening kept for
// it. On Debian's 6.1 under TCG an exchange once ate that margin in 20 s
// after a stop at 176,403 (MemAvailable 466 → 258 MiB, 2026-12-07) and
// the OOM killer took every worker, then found nothing left to kill
// ("System is deadlocked on memory"); the same run passed four times.
func (ma *Machine) ExchangeGuard() (limit.Kind, string) {
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return "", ""
	}
	avail, out, ok := ma.kernelLeft(m)
	if half := memmodel.RunEnds.Margin(ma.held) / 2; ok && avail+out <= half {
		return limit.ReclaimExhausted, fmt.Sprintf("kernel allocations had %s left, half the margin the opening stopped with (%s): the exchange was cut short before the OOM killer comes",
			units.Bytes(avail+out), units.Bytes(2*half))
	}
	return "", ""
}

// kernelLeft is what kernel allocations can still get, both guards' end:
// free pages and page cache (procfs.KernelAvailable), the dentries and
// inodes no one holds, and what swap can give; ok is false where the zones
// cannot be read. Reclaim frees those dentries late, in proportion to the
// page cache it scans: left out, a run that began with a million of them
// stopped 9,800 connections short of its prediction with 634,000 still
// cached (2026-12-07), where the OOM killer comes only once reclaim has
// scanned them all.
func (ma *Machine) kernelLeft(m procfs.Meminfo) (avail, toSwap uint64, ok bool) {
	avail, err := procfs.KernelAvailable()
	slab, _ := procfs.ShrinkableSlab(ma.shrinkSizes)
	return avail + slab, reclaimableToSwap(m), err == nil
}

// reclaimableToSwap is the RAM swap can still give kernel allocations: the
// swap cache's pages that are written (their copy is in swap already; one
// still being written cannot be freed until its write ends), and as much of
// the rest of anonymous memory as free swap holds.
func reclaimableToSwap(m procfs.Meminfo) uint64 {
	anon, clean := m.Swappable(), m.SwapCacheClean()
	return clean + min(m.SwapFree, anon-min(anon, m.SwapCached))
}

// Result is summary.json's machine, at the end of a run that held
// established connections and was stopped by stoppedBy.
func (ma *Machine) Result(established uint64, stoppedBy limit.Kind) *MachineResult {
	res := &MachineResult{MemBytes: ma.Size, Mechanism: "hugetlb: vm.nr_hugepages reserves the rest of RAM", HugePages: ma.pages,
		LeftBytes: ma.left, ModelBytesPerConnection: ma.modelPerConn, ModelSwapStartConnections: ma.modelSwapStart, ModelConnections: ma.modelStop,
		MeasuredOver:                 ma.calibratedOver,
		PredictedSwapStartConnection: ma.predictSwapStart, PredictedConnections: ma.predictStop, ActualConnections: established, StoppedBy: stoppedBy}
	if ma.calibratedOver > 0 {
		res.MeasuredBytesPerConnection = ma.perConn
	}
	res.Prediction = ma.prediction
	res.OpeningHolds, res.OpeningHeldSeconds = ma.pace.holds, ma.Held().Seconds()
	return res
}
