package analysis

// The swap leg of a run on a smaller machine (--machine-mem) with a
// ballast: where swapping began, how much of the ballast went out, what
// slab held at the stop, and why the run stopped.

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/phase"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// MachineRun is what a --machine-mem run recorded of its machine.
type MachineRun struct {
	MemBytes           uint64  `json:"mem_bytes"`
	SwapBytes          uint64  `json:"swap_bytes"`
	PredictedSwapStart uint64  `json:"predicted_swap_start"`
	PredictedStop      uint64  `json:"predicted_stop"`
	BallastBytes       uint64  `json:"ballast_bytes"`
	BallastSwappedPeak uint64  `json:"ballast_swapped_peak"`
	TouchP50us         float64 `json:"touch_p50_us"`
	TouchP99us         float64 `json:"touch_p99_us"`
	TouchMaxus         float64 `json:"touch_max_us"`
	MajorFaults        uint64  `json:"major_faults"`
	MinWatermark       uint64  `json:"min_watermark"` // Σ zones' min watermark: free pages below it are the kernel's reserve
	// The opening's holds while every task stalled on memory (its pacing).
	OpeningHolds       int     `json:"opening_holds,omitempty"`
	OpeningHeldSeconds float64 `json:"opening_held_seconds,omitempty"`
}

// SwapLeg is the explanation's account of the machine going into swap.
type SwapLeg struct {
	// SwapStartConnections is the count held when the kernel first wrote
	// to swap (pswpout), 0 when it never did.
	SwapStartConnections uint64 `json:"swap_start_connections"`
	SwappedBytesPeak     uint64 `json:"swapped_bytes_peak"` // swap in use at most, over the run
	BallastSwappedPeak   uint64 `json:"ballast_swapped_bytes_peak"`
	SlabAtStop           uint64 `json:"slab_bytes_at_stop"`
	// RoomAtStall, for a run PSI stopped, is where the memory it still had
	// (free, and swap cache already written) would have taken it.
	RoomAtStall uint64 `json:"connections_room_at_stall,omitempty"`
	Verdict     string `json:"verdict"`
}

// swapLeg reads the time series of a --machine-mem run; perConn is what a
// connection cost it, in bytes.
func swapLeg(r Run, perConn float64) *SwapLeg {
	m := r.Machine
	if m == nil || len(r.Series) == 0 {
		return nil
	}
	leg := &SwapLeg{BallastSwappedPeak: m.BallastSwappedPeak, SlabAtStop: r.Peak.Slab}
	base := r.Series[0]
	var prev Sample
	for _, s := range r.Series {
		if s.Phase != phase.Connect && s.Phase != phase.Exchange {
			prev = s
			continue
		}
		leg.SwappedBytesPeak = max(leg.SwappedBytesPeak, s.SwapUsed)
		if leg.SwapStartConnections == 0 && s.PswpOut > base.PswpOut {
			// Between the last sample without and this one: the midpoint.
			leg.SwapStartConnections = (prev.Established + s.Established + 1) / 2
		}
		prev = s
	}
	var v strings.Builder
	if leg.SwapStartConnections > 0 {
		fmt.Fprintf(&v, "from %s connections the kernel pushed anonymous memory to swap to make room for socket slab, which cannot be swapped (%s in swap at most",
			units.Approx(leg.SwapStartConnections), units.Bytes(leg.SwappedBytesPeak))
		if m.BallastBytes > 0 {
			fmt.Fprintf(&v, ", %s of it the ballast's %s; its touches waited up to %s, p99 %s", units.Bytes(m.BallastSwappedPeak), units.Bytes(m.BallastBytes),
				duration(m.TouchMaxus), duration(m.TouchP99us))
		}
		v.WriteString("); ")
	} else {
		v.WriteString("the kernel never wrote to swap; ")
	}
	fmt.Fprintf(&v, "at %s connections %s, with slab holding %s of the %s machine",
		units.Approx(r.Connections), stopReason(r.RunLimit), units.Bytes(leg.SlabAtStop), units.Bytes(m.MemBytes))
	if m.PredictedStop > 0 {
		fmt.Fprintf(&v, " (the run's last prediction: %s, %s)", units.Count(m.PredictedStop), offBy(r.Connections, m.PredictedStop))
	}
	if r.RunLimit != nil && r.RunLimit.Kind == limit.MemoryPressure && perConn > 0 {
		var left string
		leg.RoomAtStall, left = memoryLeftAtStall(r, perConn)
		v.WriteString("; " + left)
	}
	leg.Verdict = v.String()
	return leg
}

// memoryLeftAtStall says what memory a run stopped by PSI still had: free
// pages above the min watermark, and swap cache whose copy is written
// (reclaim frees it without I/O). A stall is the machine's tasks waiting
// on swap, the ballast's touches among them, not its memory running out:
// on an 8 GiB machine (2026-12-06) the kernel had written 1.9 GiB of the
// 2 GiB swap while 992 MiB of it was still in RAM, and the stop came
// 20 % before the prediction, with the room for that 20 % still there.
func memoryLeftAtStall(r Run, perConn float64) (room uint64, sentence string) {
	p := r.Peak
	free := p.MemFree + p.PCPFree
	free -= min(free, r.Machine.MinWatermark)
	written := p.SwapCached - min(p.SwapCached, p.Writeback)
	more := uint64(float64(free+written) / perConn)
	s := fmt.Sprintf("memory was not spent: %s free above the min watermark and %s of swap cache already written to swap (reclaim frees it without I/O), room for ≈ %s more at %.1f KiB a connection, ≈ %s in all",
		units.Bytes(free), units.Bytes(written), units.Approx(more), perConn/1024, units.Approx(r.Connections+more))
	if m := r.Machine; m.PredictedStop > 0 {
		s += fmt.Sprintf(", %+.0f %% from the prediction", units.Off(r.Connections+more, m.PredictedStop))
	}
	return r.Connections + more, s + "; the stalls stopped it first, which no memory model predicts"
}

// offBy says how far actual fell from predicted, in percent of predicted.
func offBy(actual, predicted uint64) string {
	return fmt.Sprintf("%+.0f %% off", units.Off(actual, predicted))
}

func stopReason(b *Bound) string {
	if b == nil {
		return "every connection was held"
	}
	switch b.Kind {
	case limit.SwapFull:
		return "swap was full"
	case limit.MemoryPressure:
		return "every task waited on memory (PSI) and the run stopped before the machine froze"
	case limit.MinWatermark:
		return "free memory reached the min watermark"
	case limit.ReclaimExhausted:
		return "reclaim had nothing left to free (page cache and unused dentries gone, free pages near the min watermarks, and anything swappable out), and the run stopped before the OOM killer"
	case limit.WorkerDied:
		return "a worker died (" + b.Detail + ")"
	}
	return "the run stopped (" + string(b.Kind) + ")"
}

func duration(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.1f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.1f ms", us/1e3)
	}
	return fmt.Sprintf("%.1f µs", us)
}

// swapChart draws a --machine-mem run against the connections held: slab
// climbing, swap filling, the ballast going out, and where the run's last
// prediction said swapping would start and the run would stop.
func swapChart(series []Sample, m *MachineRun) string {
	var pts []Sample
	for _, s := range series {
		if (s.Phase == phase.Connect || s.Phase == phase.Idle) && (m != nil || s.BallastRSS+s.BallastSwap > 0) {
			pts = append(pts, s)
		}
	}
	if len(pts) < 2 {
		return `<p class="note">Not a smaller machine (--machine-mem), and no ballast (--ballast).</p>`
	}
	lines := []struct {
		name string
		v    func(Sample) float64
	}{
		{"slab", func(s Sample) float64 { return float64(s.Slab) }},
		{"swap used", func(s Sample) float64 { return float64(s.SwapUsed) }},
	}
	if pts[0].BallastRSS+pts[len(pts)-1].BallastRSS > 0 {
		lines = append(lines, []struct {
			name string
			v    func(Sample) float64
		}{
			{"ballast resident", func(s Sample) float64 { return float64(s.BallastRSS) }},
			{"ballast swapped", func(s Sample) float64 { return float64(s.BallastSwap) }},
		}...)
	}
	var marks []struct {
		name string
		at   uint64
	}
	if m != nil {
		for _, mk := range []struct {
			name string
			at   uint64
		}{{"predicted swap start", m.PredictedSwapStart}, {"predicted stop", m.PredictedStop}} {
			if mk.at > 0 {
				marks = append(marks, mk)
			}
		}
	}
	xMax, yMax := 1.0, 1.0
	for _, s := range pts {
		xMax = max(xMax, float64(s.Established))
		for _, l := range lines {
			yMax = max(yMax, l.v(s))
		}
	}
	for _, mk := range marks {
		xMax = max(xMax, float64(mk.at))
	}
	var b strings.Builder
	x, y := chart(&b, "connections held", "bytes", niceTicks(xMax), niceBytes(yMax), count, bytesAxis)
	for i, l := range lines {
		var poly []string
		for _, s := range pts {
			poly = append(poly, fmt.Sprintf("%.1f,%.1f", x(float64(s.Established)), y(l.v(s))))
		}
		color := palette[i%len(palette)]
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`, strings.Join(poly, " "), color, l.name)
		legend(&b, i, color, l.name)
	}
	for j, mk := range marks {
		color := []string{"#888", "#000"}[j%2]
		fmt.Fprintf(&b, `<line class="prediction" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="5,4" stroke-width="1.5"><title>%s: %s</title></line>`,
			x(float64(mk.at)), x(float64(mk.at)), y(0), y(yMax), color, mk.name, units.Count(mk.at))
		legend(&b, len(lines)+j, color, fmt.Sprintf("%s, %s", mk.name, units.Count(mk.at)))
	}
	b.WriteString("</svg>")
	return b.String()
}
