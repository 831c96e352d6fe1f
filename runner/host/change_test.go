package host

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
)

// fake records what was done to it in a log shared by the changes.
type fake struct {
	name     string
	failWith error
	log      *[]string
}

func (f *fake) Name() string { return f.name }
func (f *fake) Check() error {
	*f.log = append(*f.log, "check "+f.name)
	return nil
}
func (f *fake) Apply() error {
	*f.log = append(*f.log, "apply "+f.name)
	return f.failWith
}
func (f *fake) Undo() error {
	*f.log = append(*f.log, "undo "+f.name)
	if f.name == "b" {
		return errors.New("still busy")
	}
	return nil
}

// Changes are applied in order and undone in reverse, each reached one
// undone even when one fails half-way, and every undo error is named.
func TestChangesApplyInOrderAndUndoInReverse(t *testing.T) {
	var log []string
	a, b, c := &fake{name: "a", log: &log}, &fake{name: "b", log: &log}, &fake{name: "c", log: &log}
	applied, err := ApplyAll("", []Change{a, b, c})
	if err != nil || len(applied) != 3 {
		t.Fatalf("ApplyAll: %d applied, %v", len(applied), err)
	}
	errs := UndoAll(applied)
	if want := []string{"apply a", "apply b", "apply c", "undo c", "undo b", "undo a"}; !slices.Equal(log, want) {
		t.Errorf("log %v, want %v", log, want)
	}
	if len(errs) != 1 || errs[0].Error() != "b: still busy" {
		t.Errorf("undo errors %v, want b's, named", errs)
	}

	log = nil
	b.failWith = errors.New("refused")
	applied, err = ApplyAll("", []Change{a, b, c})
	if err == nil || len(applied) != 2 {
		t.Fatalf("ApplyAll with b refused: %d applied, %v; want a and b, and b's error", len(applied), err)
	}
	UndoAll(applied)
	if want := []string{"apply a", "apply b", "undo b", "undo a"}; !slices.Equal(log, want) {
		t.Errorf("log %v, want %v (c never applied, b undone after its failed apply)", log, want)
	}
}

// Restore undoes, newest first, the changes a killed run's directory lists,
// each once and by its own restorer; a change without one (it ended with
// the run) is passed over, and a directory without a list runs them all.
func TestRestoreUndoesWhatTheListNamesNewestFirst(t *testing.T) {
	var log []string
	for _, name := range []string{"fake first", "fake second"} {
		Register(name, func(dir string) (string, error) {
			log = append(log, "restore "+name)
			return name + " removed", nil
		})
	}
	dir := t.TempDir()
	var applyLog []string
	changes := []Change{&fake{name: "fake first", log: &applyLog}, &fake{name: "no restorer", log: &applyLog}, &fake{name: "fake second", log: &applyLog}}
	if _, err := ApplyAll(dir, changes); err != nil {
		t.Fatal(err)
	}
	// A second process of the run (--netns) lists its own too, and a
	// change listed twice is restored once.
	if _, err := ApplyAll(dir, changes[:1]); err != nil {
		t.Fatal(err)
	}
	removed, err := RestoreAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"restore fake second", "restore fake first"}; !slices.Equal(log, want) {
		t.Errorf("restored %v, want %v", log, want)
	}
	if want := []string{"fake second removed", "fake first removed"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}

	log = nil
	os.Remove(filepath.Join(dir, rundir.Changes))
	if _, err := RestoreAll(dir); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(log, "restore fake first") || !slices.Contains(log, "restore fake second") {
		t.Errorf("without a list, restored %v; want every restorer run", log)
	}
}
