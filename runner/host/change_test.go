package host

import (
	"errors"
	"slices"
	"testing"
)

// fake records what was done to it in a log shared by the changes.
type fake struct {
	name     string
	failWith error
	log      *[]string
}

func (f *fake) Name() string { return f.name }
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
	applied, err := ApplyAll([]Change{a, b, c})
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
	applied, err = ApplyAll([]Change{a, b, c})
	if err == nil || len(applied) != 2 {
		t.Fatalf("ApplyAll with b refused: %d applied, %v; want a and b, and b's error", len(applied), err)
	}
	UndoAll(applied)
	if want := []string{"apply a", "apply b", "undo b", "undo a"}; !slices.Equal(log, want) {
		t.Errorf("log %v, want %v (c never applied, b undone after its failed apply)", log, want)
	}
}
