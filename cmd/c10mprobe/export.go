package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
	"github.com/spf13/pflag"
)

// Recorded data beside summary.json and samples.json; exports derive from them.
const (
	timeseriesFile = "timeseries.json"
	stacksFile     = "stacks.json"
	cpuStacksFile  = "cpu-stacks.json"
)

// exportFormats maps each --format to the files it writes.
var exportFormats = map[string][]string{
	"csv":    {"timeseries.csv", "ledger.csv"},
	"json":   {"explanation.json"},
	"folded": {"kernel-alloc.folded", "cpu.folded"},
	"pprof":  {"kernel-alloc.pb.gz", "cpu.pb.gz"},
	"svg":    {"flamegraph.svg", "cpu-flamegraph.svg"},
	"html":   {"report.html"},
}

var allFormats = []string{"csv", "json", "folded", "pprof", "svg", "html"}

// runData is everything recorded in a run directory.
type runData struct {
	sum    summary
	in     analysis.Run
	e      analysis.Explanation
	series []analysis.Sample
	stacks []analysis.Stack
	cpu    []analysis.Stack
	cpuWhy string // why there are no CPU stacks
}

func loadRunData(dir string) (*runData, error) {
	sum, samples, err := loadRunDir(dir)
	if err != nil {
		return nil, err
	}
	d := &runData{sum: sum}
	if d.in, err = analysisInput(sum, samples); err != nil {
		return nil, err
	}
	d.e = analysis.Explain(d.in)
	for name, v := range map[string]any{timeseriesFile: &d.series, stacksFile: &d.stacks, cpuStacksFile: &d.cpu} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			if os.IsNotExist(err) {
				continue // a run without probes has no stacks
			}
			return nil, err
		}
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
	}
	return d, nil
}

// stackExports are the files drawn from stacks: nothing to draw when a run
// has none, so they are skipped, saying why, rather than written empty.
var stackExports = map[string]bool{
	"kernel-alloc.folded": true, "kernel-alloc.pb.gz": true, "flamegraph.svg": true,
	"cpu.folded": true, "cpu.pb.gz": true, "cpu-flamegraph.svg": true,
}

// noStacksWhy says why a run has no stacks of a kind, or "" when it has some.
func (d *runData) noStacksWhy(name string) string {
	cpu := strings.HasPrefix(name, "cpu")
	switch {
	case cpu && len(d.cpu) > 0, !cpu && len(d.stacks) > 0:
		return ""
	case d.sum.Kernel == nil:
		return "the run had no eBPF probes (--no-bpf)"
	case cpu && d.cpuWhy != "":
		return d.cpuWhy
	}
	return "the probes sampled none"
}

// writeExports renders the given formats into dir; it returns the files
// written, and the ones skipped with the reason.
func writeExports(dir string, d *runData, formats []string) (written []string, skipped map[string]string, err error) {
	skipped = map[string]string{}
	for _, f := range formats {
		for _, name := range exportFormats[f] {
			if why := d.noStacksWhy(name); stackExports[name] && why != "" {
				skipped[name] = why
				continue
			}
			var buf bytes.Buffer
			var err error
			switch name {
			case "timeseries.csv":
				err = analysis.WriteTimeseriesCSV(&buf, d.series, uint64(os.Getpagesize()))
			case "ledger.csv":
				err = analysis.WriteLedgerCSV(&buf, d.e)
			case "explanation.json":
				err = writeJSONTo(&buf, d.e)
			case "kernel-alloc.folded":
				err = analysis.WriteFolded(&buf, d.stacks)
			case "kernel-alloc.pb.gz":
				err = analysis.WritePprof(&buf, d.stacks, analysis.AllocSpace)
			case "flamegraph.svg":
				err = analysis.WriteFlameSVG(&buf, d.stacks, "kernel memory allocated by the run, by stack", "bytes")
			case "cpu.folded":
				err = analysis.WriteFolded(&buf, d.cpu)
			case "cpu.pb.gz":
				err = analysis.WritePprof(&buf, d.cpu, analysis.CPUSamples)
			case "cpu-flamegraph.svg":
				err = analysis.WriteFlameSVG(&buf, d.cpu, "where the run's CPU time went (connect and exchange)", "samples")
			case "report.html":
				err = analysis.WriteReport(&buf, d.report())
			}
			if err != nil {
				return written, skipped, fmt.Errorf("rendering %s: %w", name, err)
			}
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				return written, skipped, err
			}
			written = append(written, path)
		}
	}
	return written, skipped, nil
}

func (d *runData) report() analysis.Report {
	r := analysis.Report{Explanation: d.e, Series: d.series, Stacks: d.stacks, CPUStacks: d.cpu,
		Title: fmt.Sprintf("c10mprobe: %d of %d connections verified on %s", d.sum.Verified, d.sum.Requested, d.in.Server)}
	res := d.sum.Result
	r.Facts = []analysis.Fact{
		{Name: "verified", Value: fmt.Sprintf("%d of %d", res.Verified, res.Requested)},
		{Name: "workers", Value: fmt.Sprintf("%d client + %d server", res.Workers.Client, res.Workers.Server)},
		{Name: "connect", Value: fmt.Sprintf("%.2f s, %.0f/s", res.Phases.ConnectSeconds, res.ConnectRate)},
		{Name: "exchange", Value: fmt.Sprintf("%.2f s", res.Phases.ExchangeSeconds)},
		{Name: "runner memory", Value: fmt.Sprintf("%.0f B per connection (PSS)", float64(res.RunnerPss)/float64(max(1, res.Established)))},
		{Name: "stopped by", Value: res.StoppedBy},
	}
	if k := d.sum.Kernel; k != nil {
		r.Facts = append(r.Facts, analysis.Fact{Name: "probes", Value: string(k.Backend)})
		r.SocketMemory = k.SocketMemory.SockDiag
	}
	r.CPUProfileNote = "No CPU samples: " + d.cpuWhy
	if d.cpuWhy == "" {
		r.CPUProfileNote = "No CPU samples were recorded (a run without probes, or recorded before c10mprobe sampled CPU)."
	}
	return r
}

// symbolizeCPU resolves CPU stacks: kernel frames with /proc/kallsyms, user
// frames with the symbols of the executable the workers ran (non-PIE, so at
// the addresses in its file); user may be nil, leaving them in hex.
func symbolizeCPU(t *ksym.Table, user *ksym.GoTable, stacks []bpf.CPUStack) []analysis.Stack {
	var out []analysis.Stack
	for _, s := range stacks {
		frames := kernelFrames(t, s.Kernel)
		for _, a := range s.User {
			name := fmt.Sprintf("0x%x", a)
			if user != nil {
				name = user.Name(a)
			}
			frames = append(frames, name)
		}
		out = append(out, analysis.Stack{Frames: frames, Bytes: s.Samples})
	}
	return out
}

// kernelFrames names kernel addresses, innermost first, less the probe's
// own innermost frames: bpf_prog_<tag>_<name> called from bpf_trace_run<N>.
func kernelFrames(t *ksym.Table, addrs []uint64) []string {
	frames := make([]string, 0, len(addrs))
	for _, a := range addrs {
		name := t.Name(a)
		if len(frames) == 0 && (strings.HasPrefix(name, "bpf_prog_") || strings.HasPrefix(name, "bpf_trace_run") || strings.HasPrefix(name, "__bpf_trace_")) {
			continue
		}
		frames = append(frames, name)
	}
	return frames
}

// symbolize resolves the probes' allocation stacks.
func symbolize(t *ksym.Table, stacks []bpf.Stack) []analysis.Stack {
	var out []analysis.Stack
	for _, s := range stacks {
		frames := kernelFrames(t, s.Frames)
		// Pages allocated to hold new slabs are already counted by the
		// objects in them; keep them out so the flamegraph sums to memory.
		if strings.HasPrefix(s.What, "pages") && slices.Contains(frames, "allocate_slab") {
			continue
		}
		out = append(out, analysis.Stack{What: s.What, Bytes: s.Bytes, Frames: frames})
	}
	return out
}

func exportCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("export", pflag.ContinueOnError)
	formats := fs.StringSlice("format", allFormats, "formats to write: "+strings.Join(allFormats, ", "))
	if code, ok := parseFlags(fs, args, stdout, stderr, "  c10mprobe export runs/20261125T190102Z --format html,svg\n"); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "c10mprobe export: give exactly one run directory")
		return exitBadInput
	}
	for _, f := range *formats {
		if _, ok := exportFormats[f]; !ok {
			fmt.Fprintf(stderr, "c10mprobe export: unknown format %q (want %s)\n", f, strings.Join(allFormats, ", "))
			return exitBadInput
		}
	}
	d, err := loadRunData(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe export: %v\n", err)
		return exitBadInput
	}
	written, skipped, err := writeExports(fs.Arg(0), d, *formats)
	for _, path := range written {
		fmt.Fprintln(stdout, path)
	}
	for _, name := range slices.Sorted(maps.Keys(skipped)) {
		fmt.Fprintf(stderr, "skipped %s: %s\n", name, skipped[name])
	}
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe export: %v\n", err)
		return exitNotAll
	}
	return exitOK
}
