package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
)

// Memcg is the run's memory cgroup: cgroup v2 where the unified hierarchy
// has the memory controller, the v1 memory controller otherwise. Socket slab
// is charged to it (kmem accounting), so its cap limits what the article's
// machine ran out of.
type Memcg struct {
	dir   string
	v2    bool
	limit uint64
}

// Dir is the cgroup's directory.
func (m *Memcg) Dir() string { return m.dir }

// Memcg file names by version.
func (m *Memcg) file(v1, v2 string) string {
	if m.v2 {
		return filepath.Join(m.dir, v2)
	}
	return filepath.Join(m.dir, v1)
}

// MemcgPlace is where the run's cgroup goes.
type MemcgPlace struct {
	Parent string
	V2     bool
}

// FindMemcgParent returns where the run's cgroup goes.
//
// cgroup v2: directly under the root of the unified hierarchy. The tool
// usually starts in a cgroup that holds processes (a systemd session scope
// or service), and the kernel's no-internal-process rule forbids enabling a
// controller in the subtree_control of a cgroup with processes, while a
// child can only have a controller its parent enables; the root alone is
// exempt (Documentation/admin-guide/cgroup-v2.rst, "No Internal Process
// Constraint"). So the cap's cgroup is a child of the root, which must have
// +memory in its subtree_control: systemd enables it at boot. Without it the
// run is refused rather than change how the host's cgroups are set up.
// The workers leave their session's cgroup for the run: the cap is the
// limit they run under.
//
// cgroup v1: under this process's own memory cgroup, so the host's
// hierarchy and its limits still apply (v1 has no such rule).
func FindMemcgParent() (MemcgPlace, error) {
	v1Path, v2Seen, err := selfCgroups()
	if err != nil {
		return MemcgPlace{}, err
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err == nil && hasController(string(data), "memory") && v2Seen {
			sub, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
			if err != nil {
				return MemcgPlace{}, err
			}
			if !hasController(string(sub), "memory") {
				return MemcgPlace{}, fmt.Errorf("the cgroup v2 root does not give its children the memory controller (memory is not in %s/cgroup.subtree_control); systemd enables it at boot, elsewhere run: echo +memory > %s/cgroup.subtree_control", root, root)
			}
			return MemcgPlace{Parent: root, V2: true}, nil
		}
	}
	if v1Path != "" {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
			return MemcgPlace{Parent: filepath.Join("/sys/fs/cgroup/memory", v1Path)}, nil
		}
	}
	return MemcgPlace{}, errors.New("no memory cgroup controller: neither cgroup v2 with the memory controller (booted with cgroup_disable=memory?) nor the v1 memory hierarchy is mounted")
}

// selfCgroups reads this process's v1 memory cgroup path, and whether it is
// in a v2 hierarchy.
func selfCgroups() (v1Path string, v2 bool, err error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = true
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1Path = parts[2]
		}
	}
	return v1Path, v2, sc.Err()
}

func hasController(list, name string) bool {
	return strings.Contains(" "+strings.TrimSpace(list)+" ", " "+name+" ")
}

// NewMemcg creates the run's cgroup as dir at place, with its cap.
func NewMemcg(place MemcgPlace, dir string, limit uint64) (*Memcg, error) {
	m := &Memcg{dir: dir, v2: place.V2, limit: limit}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating memory cgroup: %w", err)
	}
	limitFile := m.file("memory.limit_in_bytes", "memory.max")
	if err := os.WriteFile(limitFile, []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		m.Remove()
		return nil, fmt.Errorf("setting %s: %w", limitFile, err)
	}
	if m.v2 {
		// No swap for the run's own pages beyond what the machine has: the
		// cap is on RAM, as on the smaller machine it stands for.
		_ = os.WriteFile(filepath.Join(m.dir, "memory.swap.max"), []byte("max"), 0)
	}
	return m, nil
}

// Add moves a process into the cgroup.
func (m *Memcg) Add(pid int) error {
	if err := os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("moving pid %d into %s: %w", pid, m.dir, err)
	}
	return nil
}

// Usage is what is charged to the cgroup now.
func (m *Memcg) Usage() uint64 {
	v, _ := procfs.ReadInt(m.file("memory.usage_in_bytes", "memory.current"))
	return uint64(max(0, v))
}

// Events returns how often the cap was hit and how many OOM kills it caused.
func (m *Memcg) Events() (hits, oomKills uint64) {
	if m.v2 {
		data, _ := os.ReadFile(filepath.Join(m.dir, "memory.events"))
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				switch f[0] {
				case "max":
					hits = v
				case "oom_kill":
					oomKills = v
				}
			}
		}
		return hits, oomKills
	}
	if v, err := procfs.ReadInt(filepath.Join(m.dir, "memory.failcnt")); err == nil {
		hits = uint64(v)
	}
	data, _ := os.ReadFile(filepath.Join(m.dir, "memory.oom_control"))
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			oomKills, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return hits, oomKills
}

// Remove deletes the cgroup once its processes are gone (charges left by
// freed sockets do not keep it: the kernel reparents them).
func (m *Memcg) Remove() error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(m.dir); err == nil || os.IsNotExist(err) {
			err = nil
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("removing memory cgroup %s: %w", m.dir, err)
	}
	return nil
}

// RemoveCgroup removes the cgroup a killed run left, if any, and says what
// it removed.
func RemoveCgroup(dir string) (string, error) {
	data, ok, err := ReadRecord(dir, rundir.Memcg)
	if !ok || err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(data), "\n")
	path := strings.TrimSpace(lines[0])
	if !strings.Contains(filepath.Base(path), "c10mprobe-") {
		return "", fmt.Errorf("%s names %q, not a c10mprobe cgroup", rundir.Memcg, path)
	}
	m := &Memcg{dir: path}
	what := ""
	if _, err := os.Stat(path); err == nil {
		what = "memory cgroup " + path
	}
	if err := m.Remove(); err != nil {
		return "", err
	}
	return what, os.Remove(filepath.Join(dir, rundir.Memcg))
}
