package record

import (
	"errors"
	"fmt"
	"io"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// Restore undoes what the run in dir left on the host: the tracefs mount
// its probes made, and everything the runner restores. Once all is undone,
// the run's marker goes too.
func Restore(dir string) (runner.Restored, error) {
	tracefs, terr := bpf.RestoreTracefs(dir)
	r, err := runner.Restore(dir)
	if tracefs != "" {
		r.Removed = append(r.Removed, tracefs)
	}
	if err == nil && terr == nil {
		host.Unmark(dir)
	}
	return r, errors.Join(terr, err)
}

// RestoreAndSay undoes what the run in dir left on the host, and says what
// to w, a line a change.
func RestoreAndSay(dir string, stdout io.Writer) error {
	r, err := Restore(dir)
	for _, what := range r.Removed {
		fmt.Fprintf(stdout, "removed %s\n", what)
	}
	for _, c := range r.Changes {
		fmt.Fprintln(stdout, ChangeLine(c))
	}
	if len(r.Removed)+len(r.Changes) == 0 && err == nil {
		fmt.Fprintf(stdout, "%s records nothing left to undo\n", dir)
	}
	return err
}
