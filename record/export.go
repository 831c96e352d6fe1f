package record

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/c10mprobe/c10mprobe/analysis"
)

// export is one file an export format writes: its name, the stacks it is
// drawn from (none, alloc or cpu: a run without them skips it, saying why,
// rather than writing it empty), and how it is rendered.
type export struct {
	format string
	file   string
	needs  stacksKind
	render func(r *Run, w *bytes.Buffer) error
}

// stacksKind is what an export is drawn from.
type stacksKind int

const (
	noStacks stacksKind = iota
	allocStacks
	cpuStacks
)

// exports are every file of every format, in the order they are written:
// a new export is one row.
var exports = []export{
	{"csv", "timeseries.csv", noStacks, func(r *Run, w *bytes.Buffer) error {
		return analysis.WriteTimeseriesCSV(w, r.Series, uint64(os.Getpagesize()))
	}},
	{"csv", "ledger.csv", noStacks, func(r *Run, w *bytes.Buffer) error { return analysis.WriteLedgerCSV(w, *r.Explanation) }},
	{"json", "explanation.json", noStacks, func(r *Run, w *bytes.Buffer) error { return WriteJSONTo(w, *r.Explanation) }},
	{"folded", "kernel-alloc.folded", allocStacks, func(r *Run, w *bytes.Buffer) error { return analysis.WriteFolded(w, r.Stacks) }},
	{"folded", "cpu.folded", cpuStacks, func(r *Run, w *bytes.Buffer) error { return analysis.WriteFolded(w, r.CPU) }},
	{"pprof", "kernel-alloc.pb.gz", allocStacks, func(r *Run, w *bytes.Buffer) error {
		return analysis.WritePprof(w, r.Stacks, analysis.AllocSpace)
	}},
	{"pprof", "cpu.pb.gz", cpuStacks, func(r *Run, w *bytes.Buffer) error { return analysis.WritePprof(w, r.CPU, analysis.CPUSamples) }},
	{"svg", "flamegraph.svg", allocStacks, func(r *Run, w *bytes.Buffer) error {
		return analysis.WriteFlameSVG(w, r.Stacks, "kernel memory allocated by the run, by stack", "bytes")
	}},
	{"svg", "cpu-flamegraph.svg", cpuStacks, func(r *Run, w *bytes.Buffer) error {
		return analysis.WriteFlameSVG(w, r.CPU, "where the run's CPU time went, by phase", "samples")
	}},
	{"html", "report.html", noStacks, func(r *Run, w *bytes.Buffer) error { return analysis.WriteReport(w, r.report()) }},
}

// Formats are the export formats, in the order they are written.
var Formats = func() []string {
	var fs []string
	for _, e := range exports {
		if !slices.Contains(fs, e.format) {
			fs = append(fs, e.format)
		}
	}
	return fs
}()

// IsFormat reports whether f is an export format.
func IsFormat(f string) bool { return slices.Contains(Formats, f) }

// noStacksWhy says why a run has no stacks of a kind, or "" when it has
// some (or the export needs none).
func (r *Run) noStacksWhy(needs stacksKind) string {
	switch {
	case needs == noStacks, needs == cpuStacks && len(r.CPU) > 0, needs == allocStacks && len(r.Stacks) > 0:
		return ""
	case r.Summary.Kernel == nil:
		return "the run had no eBPF probes (--no-bpf)"
	case needs == cpuStacks && r.CPUWhy != "":
		return r.CPUWhy
	}
	return "the probes sampled none"
}

// Export renders the given formats into dir; it returns the files written,
// and the ones skipped with the reason. A run without an explanation (it
// ended before its peak) has nothing to render.
func (r *Run) Export(dir string, formats []string) (written []string, skipped map[string]string, err error) {
	if r.Explanation == nil {
		return nil, nil, r.NoPeak
	}
	skipped = map[string]string{}
	for _, f := range formats {
		for _, e := range exports {
			if e.format != f {
				continue
			}
			if why := r.noStacksWhy(e.needs); why != "" {
				skipped[e.file] = why
				continue
			}
			var buf bytes.Buffer
			if err := e.render(r, &buf); err != nil {
				return written, skipped, fmt.Errorf("rendering %s: %w", e.file, err)
			}
			path := filepath.Join(dir, e.file)
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				return written, skipped, err
			}
			written = append(written, path)
		}
	}
	return written, skipped, nil
}

func (r *Run) report() analysis.Report {
	res := r.Summary.Result
	rep := analysis.Report{Explanation: *r.Explanation, Series: r.Series, Stacks: r.Stacks, CPUStacks: r.CPU, PageSize: uint64(os.Getpagesize()),
		Title:  fmt.Sprintf("c10mprobe: %d of %d connections verified on %s", res.Verified, res.Requested, r.Input.Server),
		Covers: map[string][]string{}, Machine: r.Input.Machine}
	for _, c := range r.Input.Caches {
		rep.Covers[c.Name] = c.Covers
	}
	rep.Facts = []analysis.Fact{
		{Name: "verified", Value: fmt.Sprintf("%d of %d", res.Verified, res.Requested)},
		{Name: "workers", Value: fmt.Sprintf("%d client + %d server", res.Workers.Client, res.Workers.Server)},
		{Name: "connect", Value: fmt.Sprintf("%.2f s, %.0f/s", res.Phases.ConnectSeconds, res.ConnectRate)},
		{Name: "exchange", Value: fmt.Sprintf("%.2f s", res.Phases.ExchangeSeconds)},
		{Name: "runner memory", Value: fmt.Sprintf("%.0f B per connection (PSS)", float64(res.RunnerPss)/float64(max(1, res.Established)))},
		{Name: "stopped by", Value: string(res.StoppedBy)},
	}
	if k := r.Summary.Kernel; k != nil {
		rep.Facts = append(rep.Facts, analysis.Fact{Name: "probes", Value: string(k.Backend)})
		rep.SocketMemory = k.SocketMemory.SockDiag
	}
	rep.CPUProfileNote = "No CPU samples: " + r.CPUWhy
	if r.CPUWhy == "" {
		rep.CPUProfileNote = "No CPU samples were recorded (a run without probes, or recorded before c10mprobe sampled CPU)."
	}
	return rep
}

// Compared is what the run contributes to a comparison.
func (r *Run) Compared(name string) analysis.Compared {
	res := r.Summary.Result
	e := *r.Explanation
	n := float64(max(1, res.Established))
	m := map[string]float64{
		"connections": float64(res.Established), "verified": float64(res.Verified),
		"connect_rate": res.ConnectRate, "verified_rate": res.VerifiedRate,
		"kernel_per_conn": e.KernelPerConnection, "user_per_conn": e.UserPerConnection,
		"runner_pss_per_conn": float64(res.RunnerPss) / n,
		"queued_per_conn":     float64(r.Summary.SocketBuffers) / n,
		"tcp_mem_per_conn":    float64(max(0, r.Input.Peak.TCPMemPages-r.Input.Idle.TCPMemPages)*int64(os.Getpagesize())) / n,
	}
	if k := r.Summary.Kernel; k != nil {
		m["socket_p50"], m["socket_p99"], m["socket_max"] = float64(k.SocketMemory.P50), float64(k.SocketMemory.P99), float64(k.SocketMemory.Max)
	}
	if len(e.Limits) > 0 && e.Limits[0].BindsAt != nil {
		m["binds_at"] = float64(*e.Limits[0].BindsAt)
	}
	return analysis.Compared{Name: name, Explanation: e, Metrics: m, Settings: r.settings()}
}
