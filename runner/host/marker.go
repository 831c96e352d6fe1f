package host

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// MarkerDir holds a file for each process of a run that changes the host,
// naming its run directory. A file whose process is gone is a run killed
// before it put the host back (SIGKILL, the OOM killer): the next run
// refuses until `restore` has. /run is a tmpfs, so a reboot, which undoes
// sysctls and huge pages too, clears it.
var MarkerDir = "/run/c10mprobe"

// Mark writes this process's marker naming the run directory dir; unmark
// removes it, once the run has put the host back.
func Mark(dir string) (unmark func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(MarkerDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(MarkerDir, strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%s\n%d\n", abs, st.StartTime)), 0o644); err != nil {
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// Killed returns the run directories whose marking process is gone, each
// once.
func Killed() []string {
	entries, _ := os.ReadDir(MarkerDir)
	var dirs []string
	for _, e := range entries {
		dir, alive := readMarker(filepath.Join(MarkerDir, e.Name()), e.Name())
		if dir != "" && !alive && !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// Running says whether a live process has marked dir as its run.
func Running(dir string) bool {
	abs, _ := filepath.Abs(dir)
	entries, _ := os.ReadDir(MarkerDir)
	for _, e := range entries {
		if d, alive := readMarker(filepath.Join(MarkerDir, e.Name()), e.Name()); d == abs && alive {
			return true
		}
	}
	return false
}

// readMarker reads one marker: its run directory, and whether the process
// that wrote it (the pid, started at the time it recorded) still runs.
func readMarker(path, pid string) (dir string, alive bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		return "", false
	}
	n, err1 := strconv.Atoi(pid)
	start, err2 := strconv.ParseUint(lines[1], 10, 64)
	if err1 != nil || err2 != nil {
		return "", false
	}
	st, err := procfs.ReadStat(n)
	return lines[0], err == nil && st.StartTime == start && st.State != 'Z'
}

// Unmark removes the markers naming dir whose process is gone: restore has
// put the host back, or the run left nothing to.
func Unmark(dir string) {
	abs, _ := filepath.Abs(dir)
	entries, _ := os.ReadDir(MarkerDir)
	for _, e := range entries {
		path := filepath.Join(MarkerDir, e.Name())
		if d, alive := readMarker(path, e.Name()); d == abs && !alive {
			os.Remove(path)
		}
	}
}
