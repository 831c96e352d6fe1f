package record

import (
	"errors"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// ErrNoMem: a prediction without a machine run to make again needs --mem.
var ErrNoMem = errors.New("no machine size")

// PredictQuery is what predict was asked: a run to take costs from (or
// nil), and the machine; Given names the flags given.
type PredictQuery struct {
	Run                      *Run
	From                     string
	Family                   runner.Family
	Mem, Swap, Base, Reserve uint64
	Ballast                  uint64 // for a --machine-mem run: the ballast instead of its own
	Given                    map[string]bool
}

// ErrBallastWithoutMachine: --ballast replaces a --machine-mem run's
// ballast, and there is none to replace.
var ErrBallastWithoutMachine = errors.New("--ballast replaces the ballast of a --machine-mem run given with --from")

// ErrBallastWithBase: --base or --reserve make a prediction anew, where
// --ballast changes a --machine-mem run's own.
var ErrBallastWithBase = errors.New("--ballast changes a --machine-mem run's own prediction, and --base or --reserve make one anew: give one or the other")

// Predict answers predict: a --machine-mem run's recorded projection made
// again (on its machine, or on Mem and Swap), unless other programs'
// memory is given anew; else the machine of Mem from the run's or this
// host's costs. Figures say where a fresh prediction's numbers come from.
func Predict(q PredictQuery) (e analysis.Explanation, figures []string, err error) {
	if m := machineOf(q.Run); m != nil && !q.Given["base"] && !q.Given["reserve"] {
		swap := q.Swap
		if !q.Given["swap"] {
			swap = m.Prediction.Room.Swap
		}
		var b *analysis.Ballast
		if q.Given["ballast"] {
			b = &analysis.Ballast{Now: q.Ballast}
			if rb := q.Run.Summary.Result.Ballast; rb != nil {
				b.Had = rb.Bytes
			}
		}
		return analysis.PredictAgain(*m.Prediction, q.Mem, swap, b, "the run in "+q.From), nil, nil
	}
	if q.Given["ballast"] && machineOf(q.Run) != nil {
		return e, nil, ErrBallastWithBase
	}
	if q.Given["ballast"] {
		return e, nil, ErrBallastWithoutMachine
	}
	if q.Mem == 0 {
		return e, nil, ErrNoMem
	}
	// An explicit --base, 0 included, is other programs' memory: their
	// anonymous pages, which swap can take.
	machine := analysis.Machine{Mem: q.Mem, Swap: q.Swap, Baseline: q.Base, BaselineSwappable: q.Base, Reserve: q.Reserve, Kernel: host.WatermarkKernel()}
	var costs analysis.Costs
	var used, anon uint64
	if q.Run != nil {
		idle := q.Run.Input.Idle
		costs, used, anon = analysis.CostsOf(*q.Run.Explanation, "the run in "+q.From), idle.MemTotal-idle.MemAvailable, idle.AnonPages
	} else if costs, used, anon, err = HostCosts(q.Family); err != nil {
		return e, nil, err
	}
	if !q.Given["base"] {
		machine.Baseline, machine.BaselineSwappable = used, anon
	}
	return analysis.Predict(machine, costs), analysis.PredictionSources(costs, q.Given), nil
}

// machineOf is a --machine-mem run's machine, when it recorded its
// prediction.
func machineOf(run *Run) *host.MachineResult {
	if run == nil || run.Summary.Result.Machine == nil || run.Summary.Result.Machine.Prediction == nil {
		return nil
	}
	return run.Summary.Result.Machine
}
