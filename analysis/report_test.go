package analysis

import (
	"math"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/phase"
)

// The memory chart ends at the peak, where the exchange's payload is
// queued, and its top there is every layer's source: slab growth,
// tcp_mem's pages and the runner's RSS; caches are labelled by what the
// run allocated from them.
func TestMemoryChartEndsAtThePeakWithEverything(t *testing.T) {
	const mib = 1 << 20
	series := []Sample{
		{Phase: phase.Idle, Slab: 100 * mib, RunnerRSS: 10 * mib},
		{Phase: phase.Connect, Established: 5000, Slab: 140 * mib, TCPMemPages: 10, RunnerRSS: 11 * mib,
			CacheBytes: map[string]int64{"TCP": 24 * mib, "pool_workqueue": 1 * mib}},
		{Phase: phase.Exchange, Established: 10000, Slab: 180 * mib, TCPMemPages: 20, RunnerRSS: 12 * mib,
			CacheBytes: map[string]int64{"TCP": 47 * mib, "pool_workqueue": 2 * mib}},
		// The payload queued: skbs in slab, their data in tcp_mem's pages.
		{Phase: phase.Exchange, Established: 10000, Slab: 600 * mib, TCPMemPages: 160000, RunnerRSS: 13 * mib,
			CacheBytes: map[string]int64{"TCP": 47 * mib, "pool_workqueue": 400 * mib}},
		{Phase: phase.Close, Established: 0, Slab: 100 * mib},
	}
	pts, layers := memoryStack(series, 4096, map[string][]string{"pool_workqueue": {"skbuff_fclone_cache"}})
	last := len(pts) - 1
	if pts[last].Slab != 600*mib {
		t.Fatalf("the chart ends at %+v, not the peak", pts[last])
	}
	var top float64
	var names []string
	for _, l := range layers {
		top += l.values[last]
		names = append(names, l.name)
	}
	want := float64(500*mib + 160000*4096 + 3*mib)
	if math.Abs(top-want) > 1 {
		t.Errorf("the peak's stack is %.0f B, its sources %.0f B", top, want)
	}
	if got := strings.Join(names, "|"); !strings.Contains(got, "skbuff_fclone_cache (as pool_workqueue)") {
		t.Errorf("layers %s", got)
	}
	if svg := memoryChart(series, 4096, nil); !strings.Contains(svg, "<title>other slab</title>") {
		t.Errorf("no other-slab layer in\n%.300s", svg)
	}
}

// A --machine-mem run's chart draws swap filling and marks where its
// prediction said swapping would start and the run would stop, on an axis
// wide enough for both.
func TestMachineChartMarksThePrediction(t *testing.T) {
	var series []Sample
	for i := range 10 {
		series = append(series, Sample{Phase: phase.Connect, Established: uint64(i * 10000), Slab: uint64(i) << 26, SwapUsed: uint64(max(0, i-5)) << 24})
	}
	svg := swapChart(series, &MachineRun{MemBytes: 4 << 30, PredictedSwapStart: 52000, PredictedStop: 120000})
	if strings.Count(svg, `class="prediction"`) != 2 || !strings.Contains(svg, "swap used") || !strings.Contains(svg, "predicted stop, 120,000") ||
		strings.Contains(svg, "ballast") {
		t.Errorf("machine chart:\n%s", svg)
	}
	if note := swapChart(series, nil); !strings.HasPrefix(note, `<p class="note">`) {
		t.Errorf("no machine, no ballast: %s", note)
	}
}

// A smaller machine stopped by PSI says what memory it still had: free
// pages above the min watermark and swap cache already written (not what
// is still being written), and where that room would have taken it
// against the prediction; a stop by swap_full says nothing of the kind.
func TestStallVerdictSaysWhatMemoryWasLeft(t *testing.T) {
	var series []Sample
	for i := range 5 {
		series = append(series, Sample{Phase: phase.Connect, Established: uint64(i * 150000), PswpOut: uint64(max(0, i-2) * 1000)})
	}
	r := Run{Connections: 600000, Series: series,
		Machine:  &MachineRun{MemBytes: 8 << 30, PredictedStop: 760000, MinWatermark: 64 << 20},
		RunLimit: &Bound{Kind: limit.MemoryPressure, At: 600000},
		Peak:     Memory{MemFree: 300 << 20, PCPFree: 28 << 20, SwapCached: 1100 << 20, Writeback: 100 << 20}}
	// (300 + 28 − 64) MiB free and (1100 − 100) MiB written: 1,264 MiB at
	// 8 KiB a connection is 161,792 more, 761,792 in all: +0 %.
	leg := swapLeg(r, 8192)
	if leg.RoomAtStall != 761792 {
		t.Errorf("room at the stall %d, want 761,792", leg.RoomAtStall)
	}
	v := leg.Verdict
	for _, want := range []string{"264.0 MiB free above the min watermark", "1000.0 MiB of swap cache already written", "room for ≈ 162k more", "≈ 762k in all, +0 % from the prediction"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict lacks %q:\n%s", want, v)
		}
	}
	r.RunLimit.Kind = limit.SwapFull
	if leg := swapLeg(r, 8192); strings.Contains(leg.Verdict, "not spent") || leg.RoomAtStall != 0 {
		t.Errorf("a swap_full stop says memory was left (%d):\n%s", leg.RoomAtStall, leg.Verdict)
	}
}
