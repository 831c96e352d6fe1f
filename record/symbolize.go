package record

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
)

// symbolizeCPU resolves CPU stacks: kernel frames with /proc/kallsyms, user
// frames with the symbols of the executable the sampled process ran
// (non-PIE, so at the addresses in its file): the parent's or the workers'.
// An image without a table leaves its frames in hex. The outermost frame
// names the process's executable, as perf's comm does.
func symbolizeCPU(t *ksym.Table, images map[bpf.Image]userImage, stacks []bpf.CPUStack) []analysis.Stack {
	var out []analysis.Stack
	for _, s := range stacks {
		frames := kernelFrames(t, s.Kernel)
		img := images[s.Image]
		for _, a := range s.User {
			name := fmt.Sprintf("0x%x", a)
			if img.table != nil {
				name = img.table.Name(a)
			}
			frames = append(frames, name)
		}
		if img.name != "" {
			frames = append(frames, "["+img.name+"]")
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

// userImage is an executable of the run: its file's base name and its Go
// symbols (nil where they could not be read).
type userImage struct {
	name  string
	table *ksym.GoTable
}

// userImages loads the symbols of the parent's executable and the
// workers', once when they are one file; what fails is said in log.
func userImages(workerExe string, log io.Writer) map[bpf.Image]userImage {
	parentExe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(log, "the parent's CPU frames left in hex: %v\n", err)
	}
	images := map[bpf.Image]userImage{}
	loaded := map[string]*ksym.GoTable{}
	for img, path := range map[bpf.Image]string{bpf.ImageParent: parentExe, bpf.ImageWorker: workerExe} {
		if path == "" {
			continue
		}
		t, ok := loaded[path]
		if !ok {
			var err error
			if t, err = ksym.FromGoBinary(path); err != nil {
				fmt.Fprintf(log, "CPU stacks' user frames of %s left in hex: %v\n", path, err)
			}
			loaded[path] = t
		}
		images[img] = userImage{name: filepath.Base(path), table: t}
	}
	return images
}
