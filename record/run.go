package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/runner"
)

// Summary is summary.json: the runner's result plus the sections the probes
// and the analysis add.
type Summary struct {
	*runner.Result
	Preflight   []runner.Check        `json:"preflight"`
	Host        runner.Host           `json:"host"`
	Kernel      *Kernel               `json:"kernel"`
	Explanation *analysis.Explanation `json:"explanation"`
}

// Run is everything a run directory records, and what the analysis makes
// of it.
type Run struct {
	Summary Summary
	Samples []PhaseSample
	Series  []analysis.Sample
	Stacks  []analysis.Stack
	CPU     []analysis.Stack
	CPUWhy  string // why there are no CPU stacks, when the run knew

	// Input and Explanation are set when the run reached its peak; NoPeak
	// says why not otherwise.
	Input       analysis.Run
	Explanation *analysis.Explanation
	NoPeak      error
}

// Finish builds the run's record from what the recorder saw and the
// runner's result: the kernel section, the symbolized stacks and the
// explanation. Notes on what is missing go to log.
func (r *Recorder) Finish(res *runner.Result, preflight []runner.Check, host runner.Host, log io.Writer) *Run {
	r.stopSeries()
	// Kernel symbols, read once for every stack and call site of the run.
	var syms *ksym.Table
	var symErr error
	if r.probes != nil {
		syms, symErr = ksym.Load("/proc/kallsyms")
	}
	run := &Run{
		Summary: Summary{Result: res, Preflight: preflight, Host: host, Kernel: r.kernel(res, syms)},
		Samples: r.samples, Series: r.series, CPUWhy: r.cpuWhy,
	}
	if syms != nil {
		run.Stacks, run.CPU = symbolize(syms, r.stacks), symbolizeCPU(syms, userImages(res.WorkerExecutable, log), r.cpu)
	} else if symErr != nil {
		fmt.Fprintf(log, "no allocation or CPU stacks: %v\n", symErr)
		if run.CPUWhy == "" {
			run.CPUWhy = symErr.Error()
		}
	}
	if run.explain() != nil {
		fmt.Fprintf(log, "no explanation: %v\n", run.NoPeak)
	}
	return run
}

// explain sets Input and Explanation, or NoPeak.
func (r *Run) explain() error {
	in, err := Input(r.Summary, r.Samples)
	if err != nil {
		r.NoPeak = err
		return err
	}
	in.Series, in.CPU = r.Series, r.CPU
	e := analysis.Explain(in)
	r.Input, r.Explanation, r.Summary.Explanation = in, &e, &e
	if m := r.Summary.Result.Machine; m != nil && e.Swap != nil {
		// Where swapping began is the analysis' finding: the summary gets
		// its own copy of the runner's result to hold it.
		res, machine := *r.Summary.Result, *m
		machine.ActualSwapStartConnections = e.Swap.SwapStartConnections
		res.Machine = &machine
		r.Summary.Result = &res
	}
	return nil
}

// Write writes the recorded data into dir, then every export (when the run
// has an explanation to render).
func (r *Run) Write(dir string) error {
	var errs []error
	for _, w := range []struct {
		name string
		v    any
	}{{rundir.Summary, r.Summary}, {rundir.Samples, r.Samples}, {rundir.Timeseries, r.Series}, {rundir.Stacks, r.Stacks}, {rundir.CPUStacks, r.CPU}} {
		errs = append(errs, writeJSON(filepath.Join(dir, w.name), w.v))
	}
	if r.Explanation != nil {
		_, _, err := r.Export(dir, Formats)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ErrNotARun says a directory holds no run, or a run that did not finish.
type ErrNotARun struct{ msg string }

func (e *ErrNotARun) Error() string { return e.msg }

// Load reads what a run directory records and explains it again. A run
// that ended before its peak loads with NoPeak set.
func Load(dir string) (*Run, error) {
	r := &Run{}
	for _, f := range []struct {
		name     string
		v        any
		required bool
	}{
		{rundir.Summary, &r.Summary, true}, {rundir.Samples, &r.Samples, true},
		// A run without probes has no stacks.
		{rundir.Timeseries, &r.Series, false}, {rundir.Stacks, &r.Stacks, false}, {rundir.CPUStacks, &r.CPU, false},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) && !f.required {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, jerr := os.Stat(filepath.Join(dir, rundir.Journal)); jerr == nil {
				return nil, &ErrNotARun{fmt.Sprintf("the run in %s did not finish (it has no %s); if it was killed, `sudo c10mprobe restore %s` undoes what it changed", dir, f.name, dir)}
			}
			return nil, &ErrNotARun{fmt.Sprintf("%s is not a run directory (it has no %s)", dir, f.name)}
		}
		if err != nil {
			return nil, fmt.Errorf("reading the run directory: %w", err)
		}
		if err := json.Unmarshal(data, f.v); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, f.name), err)
		}
	}
	if r.Summary.Result == nil {
		return nil, &ErrNotARun{fmt.Sprintf("%s/%s holds no run", dir, rundir.Summary)}
	}
	r.explain()
	return r, nil
}

// WriteJSONTo writes v as indented JSON.
func WriteJSONTo(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
