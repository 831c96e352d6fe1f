package runner

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// fakeChange logs what the run does to it; it refuses to apply, or trips
// its guard at its guardAt-th look, when told to.
type fakeChange struct {
	name    string
	refuse  error
	guardAt int

	mu     sync.Mutex
	log    []string
	looked int
}

func (f *fakeChange) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.log) == 0 || f.log[len(f.log)-1] != s {
		f.log = append(f.log, s) // each guard look once in a row
	}
}
func (f *fakeChange) Name() string { return f.name }
func (f *fakeChange) Check() error { f.note("check"); return nil }
func (f *fakeChange) Apply() error { f.note("apply"); return f.refuse }
func (f *fakeChange) Undo() error  { f.note("undo"); return nil }
func (f *fakeChange) Guard() (limit.Kind, string) {
	f.note("guard")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.looked++; f.guardAt > 0 && f.looked >= f.guardAt {
		return limit.MemoryReserve, "the fake change's guard"
	}
	return "", ""
}

func (f *fakeChange) logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// A change a run is given is checked before anything changes, applied
// before the first connection, guarded while connections open, and undone
// on every way out: a run that completes, one a change refuses, one a
// signal ends, and one its guard stops; restore undoes it after a kill.
func TestEveryWayOutUndoesTheRunsChanges(t *testing.T) {
	needRoot(t)
	base := Config{Conns: 2000, Rate: 4000, Listen: netip.MustParseAddrPort("127.0.0.1:19927"), Reserve: 1 << 20, SysctlSettings: SysctlSettings{NoTune: true}}
	run := func(cfg Config, ctx context.Context) (*Result, error) {
		t.Helper()
		cfg.OutDir = filepath.Join(t.TempDir(), "run")
		cfg.Inflight, cfg.Timeout = 64, 5*time.Second
		r, err := Prepare(cfg)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		return r.Run(ctx)
	}
	full := []string{"check", "apply", "guard", "undo"}

	f := &fakeChange{name: "fake"}
	cfg := base
	cfg.Changes = []host.Change{f}
	if res, err := run(cfg, context.Background()); err != nil || res.StoppedBy != limit.Complete {
		t.Errorf("completing: %v, stopped by %v", err, res.StoppedBy)
	}
	if got := f.logged(); !slices.Equal(got, full) {
		t.Errorf("completing: %v, want %v", got, full)
	}

	a, b := &fakeChange{name: "fake a"}, &fakeChange{name: "fake b", refuse: errors.New("refused")}
	cfg.Changes = []host.Change{a, b}
	if _, err := run(cfg, context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("a change refused: %v, want its error", err)
	}
	for _, c := range []*fakeChange{a, b} {
		if got, want := c.logged(), []string{"check", "apply", "undo"}; !slices.Equal(got, want) {
			t.Errorf("a change refused: %s %v, want %v", c.name, got, want)
		}
	}

	f = &fakeChange{name: "fake"}
	cfg.Changes = []host.Change{f}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.OnPhase = func(p Phase) error {
		if p == PhaseIdle {
			cancel() // as a SIGINT does, before the first connection
		}
		return nil
	}
	if res, _ := run(cfg, ctx); res.Limit == nil || res.Limit.Kind != limit.Interrupted {
		t.Errorf("a signal: limit %+v, want %s", res.Limit, limit.Interrupted)
	}
	if got := f.logged(); !slices.Contains(got, "apply") || got[len(got)-1] != "undo" {
		t.Errorf("a signal: %v, want applied then undone", got)
	}

	f = &fakeChange{name: "fake", guardAt: 3}
	cfg = base
	cfg.Changes = []host.Change{f}
	res, err := run(cfg, context.Background())
	if err != nil || res.Limit == nil || res.Limit.Detail != "the fake change's guard" || res.Established >= uint64(cfg.Conns) {
		t.Errorf("a guard: %v, limit %+v after %d of %d; want the fake's guard before all", err, res.Limit, res.Established, cfg.Conns)
	}
	if got := f.logged(); !slices.Equal(got, full) {
		t.Errorf("a guard: %v, want %v", got, full)
	}

	// Killed after applying: restore finds it in the run directory's list.
	dir := t.TempDir()
	restored := false
	host.Register("fake killed", func(string) (string, error) { restored = true; return "the fake", nil })
	if _, err := host.ApplyAll(dir, []host.Change{&fakeChange{name: "fake killed"}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := Restore(dir); !restored || !slices.Contains(r.Removed, "the fake") {
		t.Errorf("restore: restored %v, removed %v; want the fake's restorer run", restored, r.Removed)
	}
}

// A run that changed nothing (a dialer's) has no journal: restore finds
// nothing to undo, and says so without an error; a directory that is not
// there is an error.
func TestRestoreWithoutAJournal(t *testing.T) {
	dir := t.TempDir()
	// (Removed may name the fake restorer another test registered.)
	r, err := Restore(dir)
	if err != nil || len(r.Changes) != 0 {
		t.Errorf("restore of a run that changed nothing: %+v, %v; want no sysctl and no error", r, err)
	}
	if _, err := Restore(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such run directory") {
		t.Errorf("restore of a missing directory: %v", err)
	}
}
