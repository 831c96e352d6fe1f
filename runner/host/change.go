package host

import (
	"fmt"
	"os"
	"path/filepath"
)

// Change is one thing a run changes on the host and puts back. Apply makes
// it, writing first into the run directory what undoes it, so that Restore
// can after a SIGKILL; Undo puts the host back on every exit of the run,
// after an Apply that failed half-way too, and does nothing for a change
// never applied.
type Change interface {
	Name() string
	Apply() error
	Undo() error
}

// ApplyAll applies the changes in order, and returns those it reached,
// the failed one included, for UndoAll.
func ApplyAll(changes []Change) (applied []Change, err error) {
	for _, c := range changes {
		applied = append(applied, c)
		if err := c.Apply(); err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// UndoAll undoes the changes in reverse order and returns what failed,
// each error naming its change.
func UndoAll(changes []Change) []error {
	var errs []error
	for i := len(changes) - 1; i >= 0; i-- {
		if err := changes[i].Undo(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", changes[i].Name(), err))
		}
	}
	return errs
}

// Restorer undoes, from a killed run's directory alone, what one kind of
// change left there, and says what it removed ("" for nothing).
type Restorer func(dir string) (what string, err error)

// ReadRecord reads a file a run keeps in its directory while what it names
// exists; ok is false when there is none.
func ReadRecord(dir, name string) (data string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		return "", false, nil
	}
	return string(b), err == nil, err
}
