package main

import (
	"fmt"
	"io"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

func explainCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("explain", pflag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the explanation as JSON")
	input := fs.Bool("input-json", false, "print analysis' input instead (what golden tests record)")
	if code, ok := parseFlags(fs, args, stdout, stderr, "  c10mprobe explain runs/20261125T190102Z\n"); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "c10mprobe explain: give exactly one run directory")
		return exitBadInput
	}
	sum, samples, err := loadRunDir(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe explain: %v\n", err)
		return exitBadInput
	}
	in, err := analysisInput(sum, samples)
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe explain: %v\n", err)
		return exitNotAll
	}
	if *input {
		return jsonOut(stdout, stderr, in)
	}
	e := analysis.Explain(in)
	if *asJSON {
		return jsonOut(stdout, stderr, e)
	}
	analysis.WriteText(stdout, e)
	return exitOK
}

func jsonOut(stdout, stderr io.Writer, v any) int {
	if err := writeJSONTo(stdout, v); err != nil {
		fmt.Fprintf(stderr, "c10mprobe: %v\n", err)
		return exitNotAll
	}
	return exitOK
}

const predictExamples = `  c10mprobe predict --mem 8GiB --from runs/20261125T190102Z
  c10mprobe predict --mem 8GiB --swap 2GiB --base 3GiB --from runs/20261125T190102Z   # the article's desktop
  sudo c10mprobe predict --mem 64GiB            # without a run: from /proc/slabinfo object sizes
`

func predictCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("predict", pflag.ContinueOnError)
	var mem, swap, base, reserve sizeValue
	fs.Var(&mem, "mem", "the machine's memory (required), e.g. 8GiB")
	fs.Var(&swap, "swap", "its swap")
	fs.Var(&base, "base", "memory in use at idle (default: what the run found here)")
	fs.Var(&reserve, "reserve", "memory to keep free (default: none: the machine's limit)")
	from := fs.String("from", "", "a run directory to take per-connection costs from")
	asJSON := fs.Bool("json", false, "print JSON, the shape of summary.json's explanation")
	if code, ok := parseFlags(fs, args, stdout, stderr, predictExamples); !ok {
		return code
	}
	if mem == 0 {
		fmt.Fprintln(stderr, "c10mprobe predict: --mem is required, e.g. --mem 8GiB")
		return exitBadInput
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "c10mprobe predict: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	var costs analysis.Costs
	baseline := uint64(base)
	if *from != "" {
		sum, samples, err := loadRunDir(*from)
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe predict: %v\n", err)
			return exitBadInput
		}
		in, err := analysisInput(sum, samples)
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe predict: %v\n", err)
			return exitNotAll
		}
		costs = analysis.CostsOf(analysis.Explain(in), "the run in "+*from)
		if base == 0 {
			baseline = in.Idle.MemTotal - in.Idle.MemAvailable
		}
	} else {
		h, err := runner.ReadHost()
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe predict: %v\n", err)
			return exitNotAll
		}
		per, src := h.KernelBytesPerConn()
		if per == 0 {
			fmt.Fprintf(stderr, "c10mprobe predict: no costs to scale (%s): rerun with sudo or pass --from RUNDIR\n", src)
			return exitBadInput
		}
		costs = analysis.Costs{Kernel: float64(per), Source: src + " (user space unknown without a run)",
			Lines: []analysis.LedgerLine{{Kind: "slab", Name: "socket objects (estimate)", BytesPerConnection: float64(per), Source: src}}}
		if base == 0 {
			baseline = h.Mem.MemTotal - h.Mem.MemAvailable
		}
	}
	e := analysis.Predict(analysis.Machine{Mem: uint64(mem), Swap: uint64(swap), Baseline: baseline, Reserve: uint64(reserve)}, costs)
	if *asJSON {
		return jsonOut(stdout, stderr, e)
	}
	fmt.Fprintf(stdout, "%s.\n", e.Verdict)
	for _, l := range e.Ledger {
		fmt.Fprintf(stdout, "  %8.0f B/conn  %-6s %s\n", l.BytesPerConnection, l.Kind, l.Name)
	}
	return exitOK
}
