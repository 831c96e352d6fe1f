package record

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/runner"
)

// A directory that is not a run, and a run that did not finish, are named
// for what they are; the second says how to undo it.
func TestLoadNamesWhatADirectoryIs(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is not a run directory") {
		t.Errorf("empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, rundir.Journal), []byte("[]"), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "did not finish") || !strings.Contains(err.Error(), "c10mprobe restore "+dir) {
		t.Errorf("killed run: %v", err)
	}
}

// A run written and loaded again explains the same; one without its peak
// samples loads, saying why it has no explanation.
func TestWriteAndLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	res := &runner.Result{Requested: 10, Established: 10, Verified: 10, Failed: map[string]uint64{}}
	run := &Run{Summary: Summary{Result: res}, Samples: []PhaseSample{{Phase: runner.PhaseIdle}}}
	if run.explain() == nil {
		t.Fatal("a run without a peak sample has an explanation")
	}
	if err := run.Write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Explanation != nil || back.NoPeak != ErrNoPeak || back.Summary.Verified != 10 {
		t.Errorf("loaded: explanation %v, no peak %v, verified %d", back.Explanation, back.NoPeak, back.Summary.Verified)
	}
	idle, peak := PhaseSample{Phase: runner.PhaseIdle}, PhaseSample{Phase: runner.PhaseExchange}
	idle.Meminfo.MemTotal, peak.Meminfo.MemTotal = 1<<30, 1<<30
	idle.Meminfo.MemFree, peak.Meminfo.MemFree = 1<<29, 1<<29-10*8192
	run = &Run{Summary: Summary{Result: res}, Samples: []PhaseSample{idle, peak}}
	if err := run.explain(); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := run.Write(dir); err != nil {
		t.Fatal(err)
	}
	if back, err = Load(dir); err != nil || back.Explanation == nil {
		t.Fatalf("loading: %v", err)
	}
	if back.Explanation.GrowthBytes != 10*8192 || back.Explanation.Verdict != run.Explanation.Verdict {
		t.Errorf("growth %d, verdict %q; written %q", back.Explanation.GrowthBytes, back.Explanation.Verdict, run.Explanation.Verdict)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Errorf("Write rendered no report: %v", err)
	}
}

// The probe's own frames are not the kernel's; pages that back new slabs
// are counted by their objects, so they leave the flamegraph.
func TestSymbolizeDropsProbeFramesAndSlabPages(t *testing.T) {
	kallsyms := filepath.Join(t.TempDir(), "kallsyms")
	os.WriteFile(kallsyms, []byte("0000000000000100 t bpf_prog_abc_rawtp_kmem_cache_alloc\n0000000000000200 T kmem_cache_alloc_noprof\n"+
		"0000000000000300 t allocate_slab\n0000000000000400 T __sys_socket\n"), 0o644)
	syms, err := ksym.Load(kallsyms)
	if err != nil {
		t.Fatal(err)
	}
	got := symbolize(syms, []bpf.Stack{
		{Frames: []uint64{0x100, 0x200, 0x400}, Cache: "TCP", Bytes: 2368},
		{Frames: []uint64{0x300, 0x400}, Order: 1, Bytes: 8192},
		{Frames: []uint64{0x400}, Order: 0, Bytes: 4096},
	})
	if len(got) != 2 || got[0].What != "TCP" || got[0].Frames[0] != "kmem_cache_alloc_noprof" || got[1].What != "pages order 0" {
		t.Errorf("symbolized %+v", got)
	}
}
