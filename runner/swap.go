package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"golang.org/x/sys/unix"
)

// swapfile is a swap area made for one run: the article's machine had swap,
// and it shows what can leave RAM (the run's user pages) and what cannot
// (kernel slab).
type swapfile struct{ path string }

// newSwap names the swapfile in the run directory before creating it, so
// that `restore` can finish the job after a SIGKILL.
func newSwap(dir string, size uint64) (*swapfile, error) {
	path, err := filepath.Abs(filepath.Join(dir, rundir.Swapfile))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, rundir.Swap), []byte(path+"\n"), 0o644); err != nil {
		return nil, err
	}
	s := &swapfile{path: path}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating swapfile: %w", err)
	}
	// Swap files must have no holes: fallocate, not truncate.
	err = unix.Fallocate(int(f.Fd()), 0, 0, int64(size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.remove()
		return nil, fmt.Errorf("allocating a %d-byte swapfile: %w", size, err)
	}
	if out, err := exec.Command("mkswap", path).CombinedOutput(); err != nil {
		s.remove()
		return nil, fmt.Errorf("mkswap %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	if err := swapctl(unix.SYS_SWAPON, path); err != nil {
		s.remove()
		return nil, fmt.Errorf("swapon %s: %w", path, err)
	}
	return s, nil
}

func swapctl(call uintptr, path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(call, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// remove swaps the area off (its pages come back to RAM, which the run has
// freed by now) and deletes the file.
func (s *swapfile) remove() error {
	var errs []error
	if err := swapctl(unix.SYS_SWAPOFF, s.path); err != nil && err != unix.EINVAL {
		errs = append(errs, fmt.Errorf("swapoff %s: %w", s.path, err))
	}
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeSwap removes the swapfile a killed run left, if any.
func removeSwap(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, rundir.Swap))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	path := strings.TrimSpace(string(data))
	if filepath.Base(path) != rundir.Swapfile {
		return fmt.Errorf("%s names %q, not a c10mprobe swapfile", rundir.Swap, path)
	}
	if err := (&swapfile{path: path}).remove(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, rundir.Swap))
}
