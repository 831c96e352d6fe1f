package record

import (
	"fmt"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
)

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
		out = append(out, analysis.Stack{Frames: frames, Weight: s.Samples, Phase: phaseName(s.Phase)})
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
		if s.Cache == "" && slices.Contains(frames, "allocate_slab") {
			continue
		}
		out = append(out, analysis.Stack{What: s.What(), Weight: s.Bytes, Frames: frames})
	}
	return out
}
