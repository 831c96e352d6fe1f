package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

// loadRun loads a run directory that reached its peak: one that did not is
// bad input for a command that explains or renders it.
func loadRun(dir string) (*record.Run, error) {
	run, err := record.Load(dir)
	var notRun *record.ErrNotARun
	switch {
	case errors.As(err, &notRun):
		return nil, badInput("%v", err)
	case err != nil:
		return nil, err
	case run.Explanation == nil:
		return nil, badInput("%s: %v", dir, run.NoPeak)
	}
	return run, nil
}

func explainCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("explain", pflag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the explanation as JSON")
	input := fs.Bool("input-json", false, "print analysis' input instead (what golden tests record)")
	if err := parseFlags(fs, args, stdout, "  c10mprobe explain runs/20261125T190102Z\n"); err != nil {
		return err
	}
	dir, err := oneRunDir(fs)
	if err != nil {
		return err
	}
	run, err := loadRun(dir)
	if err != nil {
		return err
	}
	switch {
	case *input:
		return record.WriteJSONTo(stdout, run.Input)
	case *asJSON:
		return record.WriteJSONTo(stdout, run.Explanation)
	}
	analysis.WriteText(stdout, *run.Explanation)
	return nil
}

const predictExamples = `  c10mprobe predict --mem 8GiB --from runs/20261125T190102Z
  c10mprobe predict --mem 8GiB --swap 2GiB --base 3GiB --from runs/20261125T190102Z   # the article's desktop
  sudo c10mprobe predict --mem 64GiB            # without a run: from /proc/slabinfo object sizes
  c10mprobe predict --from runs/4GiB-run --mem 8GiB --swap 2GiB --ballast 3GiB   # a --machine-mem run's machine, larger, with another ballast
`

func predictCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("predict", pflag.ContinueOnError)
	var mem, swap, base, reserve, ballast cliflag.Size
	fs.Var(&mem, "mem", "the machine's memory, e.g. 8GiB (required, but for --from a --machine-mem run: default its machine)")
	fs.Var(&swap, "swap", "its swap (for --from a --machine-mem run: default the run's)")
	fs.Var(&base, "base", "memory other programs use, swappable (a desktop, a JVM heap); default: what the run found here at idle, its anonymous pages swappable")
	fs.Var(&reserve, "reserve", "memory to keep free (default: none: the machine's limit)")
	fs.Var(&ballast, "ballast", "for --from a --machine-mem run: a ballast of this size in place of the run's (0 for none)")
	from := fs.String("from", "", "a run directory to take per-connection costs from")
	asJSON := fs.Bool("json", false, "print JSON, the shape of summary.json's explanation")
	family := fs.String("family", "inet", "without --from: the sockets' family, inet or inet6 (a JVM's TCPv6 socks are larger)")
	if err := parseFlags(fs, args, stdout, predictExamples); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badInput("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case fs.Changed("mem") && mem == 0:
		return badInput("--mem 0: give the machine's memory, e.g. --mem 8GiB")
	case fs.Changed("family") && *from != "":
		return badInput("--family %s: with --from the costs are the run's own sockets'; --family picks this host's, without --from", *family)
	}
	var run *record.Run
	if *from != "" {
		var err error
		if run, err = loadRun(*from); err != nil {
			return err
		}
	}
	given := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	e, figures, err := record.Predict(record.PredictQuery{Run: run, From: *from, Family: runner.Family(*family), Given: given,
		Mem: uint64(mem), Swap: uint64(swap), Base: uint64(base), Reserve: uint64(reserve), Ballast: uint64(ballast)})
	switch {
	case errors.Is(err, record.ErrBallastWithBase):
		return badInput("%v", err)
	case errors.Is(err, record.ErrBallastWithoutMachine):
		return badInput("%v; for another machine, --base says what other programs use", err)
	case errors.Is(err, record.ErrNoCosts):
		return badInput("%v: rerun with sudo or pass --from RUNDIR", err)
	case errors.Is(err, record.ErrNoMem):
		return badInput("--mem is required, e.g. --mem 8GiB")
	case err != nil:
		return err
	}
	if *asJSON {
		return record.WriteJSONTo(stdout, e)
	}
	fmt.Fprintf(stdout, "%s.\n", e.Verdict)
	for _, l := range e.Ledger {
		fmt.Fprintf(stdout, "  %8.0f B/conn  %-6s %s\n", l.BytesPerConnection, l.Kind, l.Name)
	}
	if len(figures) > 0 {
		fmt.Fprintf(stdout, "Figures: %s.\n", strings.Join(figures, "; "))
	}
	return nil
}
