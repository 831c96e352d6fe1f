package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
)

// Restore undoes what a run directory records that its run left behind:
// for a run that was killed before it could undo it. Its memory cgroup and
// its swapfile go first, then the sysctls come back.
func Restore(dir string) ([]sysctl.Change, error) {
	var errs []error
	if err := removeCgroup(dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeSwap(dir); err != nil {
		errs = append(errs, err)
	}
	j, err := sysctl.LoadJournal(filepath.Join(dir, rundir.Journal))
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	err = j.Restore()
	return j.Changes(), errors.Join(append(errs, err)...)
}

// cleanup ends every worker and closes the listener; it runs on every exit.
func (r *Runner) cleanup() {
	r.stopWorkers()
	if r.listener != nil {
		r.listener.Close()
		r.listener = nil
	}
	if r.swap != nil {
		if err := r.swap.remove(); err == nil {
			os.Remove(filepath.Join(r.cfg.OutDir, rundir.Swap))
		} else {
			fmt.Fprintf(r.cfg.Log, "warning: %v; c10mprobe restore %s removes it\n", err, r.cfg.OutDir)
		}
		r.swap = nil
	}
	if r.memcap != nil {
		if err := r.memcap.remove(r.cfg.OutDir); err != nil {
			fmt.Fprintf(r.cfg.Log, "warning: %v; c10mprobe restore %s removes it\n", err, r.cfg.OutDir)
		}
	}
}

// removeCgroup removes the cgroup a killed run left, if any.
func removeCgroup(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, rundir.Memcg))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	path := strings.TrimSpace(string(data))
	if !strings.Contains(filepath.Base(path), "c10mprobe-") {
		return fmt.Errorf("%s names %q, not a c10mprobe cgroup", rundir.Memcg, path)
	}
	if err := (&memcg{dir: path}).remove(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, rundir.Memcg))
}
