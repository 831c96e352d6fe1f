package record

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner"
)

// WriteText writes what the run did, as the terminal shows it at its end,
// and, when it reached its peak, why; dir is where it is recorded.
func (run *Run) WriteText(w io.Writer, dir string) {
	res := run.Summary.Result
	if m := res.Memcap; m != nil {
		off := units.Off(m.ActualConnections, m.PredictedConnections)
		fmt.Fprintf(w, "memory cap %s: predicted %d connections, held %d (%+.1f %%), stopped by %s\n",
			units.Bytes(m.LimitBytes), m.PredictedConnections, m.ActualConnections, off, m.StoppedBy)
	}
	if m := res.Machine; m != nil {
		off := func(actual, predicted uint64) string { return fmt.Sprintf("%+.1f %%", units.Off(actual, predicted)) }
		swap, predictedBy := "", ""
		if m.PredictedSwapStartConnection > 0 {
			swap = fmt.Sprintf("swapping began near %s connections (predicted %s, %s), ", units.Count(m.ActualSwapStartConnections),
				units.Count(m.PredictedSwapStartConnection), off(m.ActualSwapStartConnections, m.PredictedSwapStartConnection))
		}
		if p := m.Prediction; p != nil {
			predictedBy = fmt.Sprintf(" (predicted %s)", p.Projection.StopBy)
		}
		held := ""
		if m.OpeningHolds > 0 {
			held = fmt.Sprintf("; the opening held %d times, %.1f s in all, while every task stalled on memory", m.OpeningHolds, m.OpeningHeldSeconds)
		}
		fmt.Fprintf(w, "machine %s: %sthe run stopped at %s (predicted %s, %s), stopped by %s%s%s\n", units.Bytes(m.MemBytes), swap,
			units.Count(m.ActualConnections), units.Count(m.PredictedConnections), off(m.ActualConnections, m.PredictedConnections), m.StoppedBy, predictedBy, held)
	}
	if b := res.Ballast; b != nil {
		fmt.Fprintf(w, "ballast %s: %s swapped out at most, %d major faults, touches p50 %.1f µs, p99 %.1f µs, max %.1f ms\n",
			units.Bytes(b.Bytes), units.Bytes(b.SwappedBytesPeak), b.MajorFaults, b.TouchLatencyUs.P50, b.TouchLatencyUs.P99, b.TouchLatencyUs.Max/1000)
	}
	writeResult(w, res, dir)
	writeKernel(w, run.Summary.Kernel, res)
	if run.Explanation != nil {
		fmt.Fprintln(w)
		analysis.WriteText(w, *run.Explanation)
	}
}

// writeResult writes the runner's result: counts, phases, limit, sysctls.
func writeResult(w io.Writer, res *runner.Result, dir string) {
	sources := "1 source address"
	if res.SourceAddresses != 1 {
		sources = fmt.Sprintf("%d source addresses", res.SourceAddresses)
	}
	fmt.Fprintf(w, "verified %d of %d connections on %s:%d (%d distinct client endpoints, %s, %d+%d workers)\n",
		res.Verified, res.Requested, res.Server.Addr, res.Server.Port, res.DistinctClientEndpoints,
		sources, res.Workers.Client, res.Workers.Server)
	fmt.Fprintf(w, "connect %.2fs (%.0f/s), exchange %.2fs, close %.2fs; %.0f verified/s\n",
		res.Phases.ConnectSeconds, res.ConnectRate, res.Phases.ExchangeSeconds, res.Phases.CloseSeconds, res.VerifiedRate)
	if res.Phases.HoldCutShort {
		fmt.Fprintf(w, "hold: cut short by a signal after %.1fs (the exchange was over before it)\n", res.Phases.HoldSeconds)
	}
	if res.Established > 0 {
		fmt.Fprintf(w, "runner memory: %s PSS, %.0f B per connection (both ends); listen overflows %d\n",
			units.Bytes(res.RunnerPss), float64(res.RunnerPss)/float64(res.Established), res.ListenOverflows)
	}
	if res.SoftnetDropped > 0 {
		fmt.Fprintf(w, "packets dropped at a full CPU input backlog: %d (/proc/net/softnet_stat; net.core.netdev_max_backlog): TCP retransmits them after a backoff\n", res.SoftnetDropped)
	}
	writePayload(w, res)
	if len(res.Failed) > 0 {
		var parts []string
		for k, v := range res.Failed {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		fmt.Fprintf(w, "failed: %s\n", strings.Join(parts, ", "))
	}
	if res.Limit != nil {
		fmt.Fprintf(w, "limit: %s at %d connections: %s\n", res.Limit.Kind, res.Limit.At, res.Limit.Detail)
	}
	for _, c := range res.SysctlChanges {
		line := ChangeLine(c)
		if !c.Restored {
			line += ": run c10mprobe restore " + dir
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "run directory: %s\n", dir)
}

// writeKernel writes what the probes saw, per connection.
func writeKernel(w io.Writer, k *Kernel, res *runner.Result) {
	if k == nil || res.Established == 0 {
		return
	}
	n := float64(res.Established)
	var total float64
	var parts []string
	for _, name := range k.TopCaches() {
		c := k.Caches[name]
		if c.BytesPerConnection < 1 {
			continue
		}
		total += c.BytesPerConnection
		parts = append(parts, fmt.Sprintf("%s %.0f", analysis.SlabLabel(name, c.Covers), c.BytesPerConnection))
	}
	fmt.Fprintf(w, "kernel slab per connection (%s probes): %.0f B = %s\n", k.Backend, total, strings.Join(parts, " + "))
	fmt.Fprintf(w, "tcp_sendmsg on the run's port: %.2f calls a connection, asking to send %s (the lengths asked, not what the kernel took); socket buffers at peak p50 %d B, p99 %d B, max %d B (sock_diag)\n",
		float64(k.TCPSendmsg.RunCalls)/n, units.Bytes(uint64(float64(k.TCPSendmsg.RunBytesAsked)/n)), k.SocketMemory.P50, k.SocketMemory.P99, k.SocketMemory.Max)
	if pc := k.ProbeCost; pc != nil {
		var parts []string
		for _, h := range pc.Hooks {
			if h.NsPerConnection >= 50 {
				parts = append(parts, fmt.Sprintf("%s %.1f × %.0f ns", h.Hook, h.RunsPerConnection, h.NsPerRun))
			}
		}
		fmt.Fprintf(w, "probe cost (kernel-timed): %.1f µs of CPU per connection = %s\n", pc.NsPerConnection/1000, strings.Join(parts, " + "))
	}
	if k.Pressure.DirectReclaim+k.Pressure.OOMVictims+k.Pressure.SwapOut > 0 {
		fmt.Fprintf(w, "pressure: direct reclaim %d, OOM victims %d, swap out %d pages\n",
			k.Pressure.DirectReclaim, k.Pressure.OOMVictims, k.Pressure.SwapOut)
	}
	if l := k.Lost; l.Total() > 0 {
		var parts []string
		for _, h := range slices.Sorted(maps.Keys(l.RecursionByHook)) {
			parts = append(parts, fmt.Sprintf("%s %d", h, l.RecursionByHook[h]))
		}
		fmt.Fprintf(w, "lost events %d: maps full %d (sockets %d, kmalloc sites %d, cache pointers %d), allocation stack samples %d, CPU samples %d, skipped by the kernel while the same program ran on the CPU %d (%s)\n",
			l.Total(), l.MapsFull(), l.Sockets, l.Kmalloc, l.Caches, l.Stacks, l.CPUSamples, l.Recursion, strings.Join(parts, ", "))
	}
}

// ChangeLine says what became of one sysctl the run set.
func ChangeLine(c sysctl.Change) string {
	switch {
	case c.LeftAlone != "":
		return fmt.Sprintf("sysctl %s %s → %s, left at %s: changed by hand since the run set it", c.Key, c.Old, c.New, c.LeftAlone)
	case c.Restored:
		return fmt.Sprintf("sysctl %s %s → %s, restored", c.Key, c.Old, c.New)
	}
	return fmt.Sprintf("sysctl %s %s → %s, NOT RESTORED", c.Key, c.Old, c.New)
}

// WritePreflight writes the limits table a run meets.
func WritePreflight(w io.Writer, checks []runner.Check) {
	WriteChecks(w, "Preflight: the limits this run will meet", checks)
}

// WriteChecks writes a table of limits under title, and each one's note.
func WriteChecks(w io.Writer, title string, checks []runner.Check) {
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LIMIT\tVALUE\tNEEDS\t\tACTION")
	for _, c := range checks {
		mark := "ok"
		if !c.OK {
			mark = "!!"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Limit, c.Value, c.Needs, mark, c.Action)
	}
	tw.Flush()
	for _, c := range checks {
		if c.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", c.Limit, c.Note)
		}
	}
}

// writePayload says what --payload sent against what it asked: the kernel
// takes what the socket's buffers hold, and with --unread nothing frees them.
func writePayload(w io.Writer, res *runner.Result) {
	p := res.Payload
	if p.Bytes == 0 {
		return
	}
	ends := uint64(2)
	if res.Mode != "" && res.Mode != "run" {
		ends = 1
	}
	asked := ends * uint64(p.Bytes) * res.Verified
	line := fmt.Sprintf("payload: sent %s of the %s asked (%s a side on each of %d verified connections)",
		units.Bytes(p.Sent), units.Bytes(asked), units.Bytes(uint64(p.Bytes)), res.Verified)
	switch {
	case p.Unread && p.Sent < asked:
		line += fmt.Sprintf("; --unread: nothing was read, so each send stopped when the socket's buffers were full (%s a connection)",
			units.Bytes(p.Sent/max(1, res.Verified)))
	case p.Sent < asked:
		line += fmt.Sprintf("; %s were never sent", units.Bytes(asked-p.Sent))
	case p.Unread:
		line += "; --unread: all of it left queued, unread"
	default:
		line += fmt.Sprintf(", read back %s", units.Bytes(p.Read))
	}
	fmt.Fprintln(w, line)
}
