package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
)

// restore removes the swapfile its run created and nothing else: an edited
// swap.path naming another file, or the run's own name on a file that is
// not the one it created, is left alone, saying why.
func TestRestoreTouchesOnlyTheRunsOwnSwapfile(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(t.TempDir(), rundir.Swapfile)
	os.WriteFile(other, []byte("someone else's"), 0o600)
	own, _ := filepath.Abs(filepath.Join(dir, rundir.Swapfile))
	os.WriteFile(own, []byte("replaced since"), 0o600)
	for _, tc := range []struct{ marker, want string }{
		{other + "\n1 2\n", "not this run directory's"},
		{own + "\n1 2\n", "not the file the run created"},
		{own + "\n", "records no device and inode"},
	} {
		os.WriteFile(filepath.Join(dir, rundir.Swap), []byte(tc.marker), 0o644)
		_, err := RemoveSwap(dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("swap.path %q: %v, want %q", tc.marker, err, tc.want)
		}
		for _, f := range []string{other, own} {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("%s was removed", f)
			}
		}
	}
	// A marker whose file was never made is simply cleared.
	os.Remove(own)
	os.WriteFile(filepath.Join(dir, rundir.Swap), []byte(fmt.Sprintf("%s\n", own)), 0o644)
	if _, err := RemoveSwap(dir); err != nil {
		t.Errorf("a marker without its file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, rundir.Swap)); !os.IsNotExist(err) {
		t.Error("the marker is still there")
	}
}
