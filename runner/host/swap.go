package host

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

// Swap is a swap area made for one run (--swap): the article's machine had
// swap, and it shows what can leave RAM (the run's user pages) and what
// cannot (kernel slab). It lives in the run directory.
type Swap struct {
	Dir  string // the run directory
	Size uint64
	Path string // set by Apply
}

// SwapName names the swapfile's change.
const SwapName = "swapfile"

func (s *Swap) Name() string { return SwapName }

// Check refuses a swapfile this host cannot make: no mkswap, too small, or
// larger than the room where the run directory will be.
func (s *Swap) Check() error {
	if _, err := exec.LookPath("mkswap"); err != nil {
		return fmt.Errorf("--swap needs mkswap (util-linux): %v", err)
	}
	if s.Size < 1<<20 {
		return fmt.Errorf("--swap must be at least 1MiB, got %d bytes", s.Size)
	}
	if free, err := freeBytes(s.Dir); err == nil && s.Size > free {
		return fmt.Errorf("--swap %s does not fit in the %s free where --out %s is", units.Bytes(s.Size), units.Bytes(free), s.Dir)
	}
	return nil
}

// freeBytes is the space free to root on the filesystem that would hold
// dir: its nearest existing ancestor's.
func freeBytes(dir string) (uint64, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		err := unix.Statfs(d, &st)
		if err == nil {
			return st.Bfree * uint64(st.Bsize), nil
		}
		if err != unix.ENOENT || d == filepath.Dir(d) {
			return 0, err
		}
	}
}

// Apply names the swapfile in the run directory before creating it, so
// that `restore` can finish the job after a SIGKILL, then swaps it on.
func (s *Swap) Apply() error {
	path, err := filepath.Abs(filepath.Join(s.Dir, rundir.Swapfile))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, rundir.Swap), []byte(path+"\n"), 0o644); err != nil {
		return err
	}
	s.Path = path
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating swapfile: %w", err)
	}
	// Its identity, so that restore touches this file and no other.
	var st unix.Stat_t
	err = unix.Fstat(int(f.Fd()), &st)
	if err == nil {
		err = os.WriteFile(filepath.Join(s.Dir, rundir.Swap), []byte(fmt.Sprintf("%s\n%d %d\n", path, st.Dev, st.Ino)), 0o644)
	}
	// Swap files must have no holes: fallocate, not truncate.
	if err == nil {
		err = unix.Fallocate(int(f.Fd()), 0, 0, int64(s.Size))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("allocating a %d-byte swapfile: %w", s.Size, err)
	}
	if out, err := exec.Command("mkswap", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkswap %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	if err := swapctl(unix.SYS_SWAPON, path); err != nil {
		return fmt.Errorf("swapon %s: %w", path, err)
	}
	return nil
}

// Undo swaps the area off and deletes it, and its record once that is done.
func (s *Swap) Undo() error {
	if s.Path == "" {
		return nil
	}
	if err := removeSwapfile(s.Path); err != nil {
		return err
	}
	s.Path = ""
	return os.Remove(filepath.Join(s.Dir, rundir.Swap))
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

// removeSwapfile swaps the area off (its pages come back to RAM, which the
// run has freed by now) and deletes the file.
func removeSwapfile(path string) error {
	var errs []error
	// try_to_unuse (mm/swapfile.c) gives up with EINTR on any pending
	// signal, a child's SIGCHLD among them, and the machine's keeper ends
	// as the run undoes the machine, just before this: one run of five
	// left its swapfile on once the keeper came (2026-12-07; none in the
	// eight since this retry). Again until it is not interrupted.
	err := swapctl(unix.SYS_SWAPOFF, path)
	for err == unix.EINTR {
		err = swapctl(unix.SYS_SWAPOFF, path)
	}
	if err != nil && err != unix.EINVAL {
		errs = append(errs, fmt.Errorf("swapoff %s: %w", path, err))
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemoveSwap removes the swapfile a killed run left, if any.
func RemoveSwap(dir string) (string, error) {
	data, ok, err := ReadRecord(dir, rundir.Swap)
	if !ok || err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(data), "\n")
	path := strings.TrimSpace(lines[0])
	// Only the run's own swapfile, in its own directory, and the very file
	// the run created: an edited swap.path must not swap off and delete
	// another.
	own, err := filepath.Abs(filepath.Join(dir, rundir.Swapfile))
	if err != nil {
		return "", err
	}
	if path != own {
		return "", fmt.Errorf("%s names %q, not this run directory's %s: left alone", rundir.Swap, path, own)
	}
	var st unix.Stat_t
	switch err := unix.Stat(path, &st); {
	case err == unix.ENOENT:
		return "", os.Remove(filepath.Join(dir, rundir.Swap)) // never created, or already gone
	case err != nil:
		return "", fmt.Errorf("checking %s: %w", path, err)
	}
	var dev, ino uint64
	if len(lines) < 2 {
		return "", fmt.Errorf("%s records no device and inode for %s (the run was killed as it created it): remove it by hand if it is not in /proc/swaps", rundir.Swap, path)
	}
	if _, err := fmt.Sscanf(lines[1], "%d %d", &dev, &ino); err != nil || dev != st.Dev || ino != st.Ino {
		return "", fmt.Errorf("%s is not the file the run created (device and inode differ from %s): left alone", path, rundir.Swap)
	}
	if err := removeSwapfile(path); err != nil {
		return "", err
	}
	return "swapfile " + path + " (swapped off)", os.Remove(filepath.Join(dir, rundir.Swap))
}
