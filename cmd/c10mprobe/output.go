package main

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
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
)

func printPreflight(w io.Writer, checks []runner.Check) {
	printChecks(w, "Preflight: the limits this run will meet", checks)
}

func printChecks(w io.Writer, title string, checks []runner.Check) {
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

func printSummary(w io.Writer, res *runner.Result, dir string) {
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
		line := changeLine(c)
		if !c.Restored {
			line += ": run c10mprobe restore " + dir
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "run directory: %s\n", dir)
}

func printKernel(w io.Writer, k *record.Kernel, res *runner.Result) {
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
	fmt.Fprintf(w, "tcp_sendmsg on the run's port: %.2f calls, %.1f B per connection; socket buffers at peak p50 %d B, p99 %d B, max %d B (sock_diag)\n",
		float64(k.TCPSendmsg.RunCalls)/n, float64(k.TCPSendmsg.RunBytes)/n, k.SocketMemory.P50, k.SocketMemory.P99, k.SocketMemory.Max)
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

// changeLine says what became of one sysctl the run set.
func changeLine(c sysctl.Change) string {
	switch {
	case c.LeftAlone != "":
		return fmt.Sprintf("sysctl %s %s → %s, left at %s: changed by hand since the run set it", c.Key, c.Old, c.New, c.LeftAlone)
	case c.Restored:
		return fmt.Sprintf("sysctl %s %s → %s, restored", c.Key, c.Old, c.New)
	}
	return fmt.Sprintf("sysctl %s %s → %s, NOT RESTORED", c.Key, c.Old, c.New)
}
