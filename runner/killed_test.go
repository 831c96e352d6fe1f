package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// TestKilledRunsLeavesLiveRunsOut: two run directories side by side, each
// with a sysctl it has not put back; one is marked by a live process (a
// serve in another network namespace, say), the other by nobody. Only the
// second is a killed run.
func TestKilledRunsLeavesLiveRunsOut(t *testing.T) {
	parent := t.TempDir()
	saved := host.MarkerDir
	host.MarkerDir = t.TempDir()
	t.Cleanup(func() { host.MarkerDir = saved })
	unrestored := `[{"key": "net.core.somaxconn", "old": "4096", "new": "65535", "restored": false}]`
	for _, name := range []string{"live", "killed"} {
		dir := filepath.Join(parent, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rundir.Journal), []byte(unrestored), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unmark, err := host.Mark(filepath.Join(parent, "live"))
	if err != nil {
		t.Fatal(err)
	}
	defer unmark()
	notes := KilledRuns(parent)
	if len(notes) != 1 || !strings.Contains(notes[0], filepath.Join(parent, "killed")) || !strings.Contains(notes[0], "net.core.somaxconn = 65535") {
		t.Errorf("notes %q; want one, for %s", notes, filepath.Join(parent, "killed"))
	}
	unmark()
	if notes := KilledRuns(parent); len(notes) != 2 {
		t.Errorf("with the live run's marker gone, notes %q; want both runs", notes)
	}
}
