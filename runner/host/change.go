package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
)

// Change is one thing a run changes on the host and puts back.
//
// Check refuses, before anything on the host has changed, what Apply could
// not do. Apply makes the change, writing first into the run directory what
// undoes it, so that Restore can after a SIGKILL. Undo puts the host back on
// every exit of the run, after an Apply that failed half-way too, and does
// nothing for a change never applied.
type Change interface {
	Name() string
	Check() error
	Apply() error
	Undo() error
}

// Guard stops a run before the host comes to harm: a change whose state
// the run must watch (a smaller machine's free pages), or the host's own
// reserve. It returns the limit that binds and why, or "".
type Guard interface {
	Guard() (limit.Kind, string)
}

// CheckAll checks every change and returns the first refusal, named.
func CheckAll(changes []Change) error {
	for _, c := range changes {
		if err := c.Check(); err != nil {
			return err
		}
	}
	return nil
}

// ApplyAll applies the changes in order, and returns those it reached, the
// failed one included, for UndoAll. Each change's name is appended to the run
// directory's list (rundir.Changes) before it is applied: Restore reads it.
func ApplyAll(dir string, changes []Change) (applied []Change, err error) {
	for _, c := range changes {
		if err := list(dir, c.Name()); err != nil {
			return applied, err
		}
		applied = append(applied, c)
		if err := c.Apply(); err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// list appends name to the run directory's list of changes; O_APPEND, as
// --netns's two processes write to one list.
func list(dir, name string) error {
	if dir == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, rundir.Changes), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, name)
	return errors.Join(err, f.Close())
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

// restorers are keyed by the change's Name, in the order a run directory
// without a list (a run older than the list) is restored in. A change that
// ends with the run's processes (the ballast) needs none.
var restorers = []struct {
	name string
	undo Restorer
}{
	{HugePagesName, restoreHugePages},
	{MemcapName, RemoveCgroup},
	{SwapName, RemoveSwap},
	{ChildEhashName, restoreChildEhash},
}

// Register adds the restorer of a change defined outside this package.
func Register(name string, undo Restorer) {
	restorers = append(restorers, struct {
		name string
		undo Restorer
	}{name, undo})
}

func restorer(name string) Restorer {
	for _, r := range restorers {
		if r.name == name {
			return r.undo
		}
	}
	return nil
}

// RestoreAll undoes, newest first, every change the run directory's list
// names, from what each left in the directory: the same loop as a run's own
// exit, for a run that was killed. Each restorer does nothing where its
// change was already undone. It returns what it removed.
func RestoreAll(dir string) (removed []string, err error) {
	names, err := Listed(dir)
	if err != nil {
		return nil, err
	}
	if names == nil {
		for _, r := range restorers {
			names = append(names, r.name)
		}
	}
	var errs []error
	for _, name := range slices.Backward(names) {
		undo := restorer(name)
		if undo == nil {
			continue
		}
		what, err := undo(dir)
		if what != "" {
			removed = append(removed, what)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return removed, errors.Join(errs...)
}

// Listed returns the changes the run directory's list names, each once, in
// the order first applied; nil where the directory has no list.
func Listed(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, rundir.Changes))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := []string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name := strings.TrimSpace(sc.Text()); name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, sc.Err()
}

// ReadRecord reads a file a run keeps in its directory while what it names
// exists; ok is false when there is none.
func ReadRecord(dir, name string) (data string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		return "", false, nil
	}
	return string(b), err == nil, err
}
