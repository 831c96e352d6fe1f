package record

import (
	"fmt"
	"io"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/runner"
)

// CensusSize is how many connections the slab hooks count exactly: the
// runner's census size with --kmem census, else all it opens.
func CensusSize(kmem Kmem, r *runner.Runner) int {
	if kmem == KmemCensus {
		return r.CensusSize()
	}
	return r.Conns()
}

// ProbeOptions are run's flags for its probes.
type ProbeOptions struct {
	Backend      bpf.Backend // "" for the first that attaches
	Kmem         Kmem
	TimePrograms bool // --probe-cost
}

// OpenProbes attaches the probes, sized by what this run opens (a dialer's
// share, not the total).
func OpenProbes(r *runner.Runner, o ProbeOptions, stderr io.Writer) (*bpf.Probes, error) {
	plan, cfg := r.Plan(), r.Config()
	probes, err := bpf.Open(bpf.Config{
		Backend: o.Backend, Conns: r.Conns(), Inflight: cfg.Inflight, RunPort: r.ServerPort(),
		Sources: plan.Sources, PortLo: plan.PortLo, PortsPerSource: plan.PortsPerSource, RunDir: cfg.OutDir,
		NoKmem: o.Kmem == KmemOff, KmemConns: CensusSize(o.Kmem, r), AutoSources: plan.AutoSources,
	})
	if err != nil {
		return nil, fmt.Errorf("attaching the eBPF probes: %v; pass --no-bpf to run without them", err)
	}
	if o.TimePrograms {
		if err := probes.TimePrograms(); err != nil {
			probes.Close()
			return nil, fmt.Errorf("--probe-cost: %v", err)
		}
	}
	fmt.Fprintf(stderr, "probes: %s backend\n", probes.Backend())
	return probes, nil
}
