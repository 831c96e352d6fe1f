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
	// enabled is the v2 root whose subtree_control the run gave +memory,
	// to take back once the cgroup is gone; "" when it had it already.
	enabled string
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

// MemcgPlace is where the run's cgroup goes, and what placing it there
// takes.
type MemcgPlace struct {
	Parent string
	V2     bool
	// Enable: the v2 root's subtree_control lacks memory, which the run
	// must enable there (and take back after).
	Enable bool
}

// FindMemcgParent returns where the run's cgroup goes.
//
// cgroup v2: directly under the root of the unified hierarchy. The tool
// usually starts in a cgroup that holds processes (a systemd session scope
// or service), and the kernel's no-internal-process rule forbids enabling a
// controller in the subtree_control of a cgroup with processes, while a
// child can only have a controller its parent enables; the root alone is
// exempt (Documentation/admin-guide/cgroup-v2.rst, "No Internal Process
// Constraint"). So the cap's cgroup is a child of the root, with +memory in
// the root's subtree_control: systemd enables it there already; on a bare
// mount the run enables it and takes it back after. The workers leave their
// session's cgroup for the run: the cap is the limit they run under.
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
			return MemcgPlace{Parent: root, V2: true, Enable: !hasController(string(sub), "memory")}, nil
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
	if place.Enable {
		if err := os.WriteFile(filepath.Join(place.Parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return nil, fmt.Errorf("enabling the memory controller in %s/cgroup.subtree_control: %w", place.Parent, err)
		}
		m.enabled = place.Parent
	}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		m.Remove()
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
// freed sockets do not keep it: the kernel reparents them), then takes back
// the memory controller the run enabled.
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
	if m.enabled != "" {
		// EBUSY if another cgroup has since enabled memory below the root.
		if err := os.WriteFile(filepath.Join(m.enabled, "cgroup.subtree_control"), []byte("-memory"), 0); err != nil {
			return fmt.Errorf("taking back the memory controller the run enabled in %s/cgroup.subtree_control: %w", m.enabled, err)
		}
		m.enabled = ""
	}
	return nil
}

// memcgRecord is what the run directory keeps of the cgroup while it
// exists: its path, and the root the run enabled memory in, if any.
func memcgRecord(dir, enabled string) string {
	s := dir + "\n"
	if enabled != "" {
		s += "enabled " + enabled + "\n"
	}
	return s
}

// RemoveCgroup removes the cgroup a killed run left, if any, takes back the
// memory controller it enabled, and says what it removed.
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
	for _, l := range lines[1:] {
		if root, ok := strings.CutPrefix(strings.TrimSpace(l), "enabled "); ok && (root == "/sys/fs/cgroup" || root == "/sys/fs/cgroup/unified") {
			m.enabled = root
		}
	}
	what := ""
	if _, err := os.Stat(path); err == nil {
		what = "memory cgroup " + path
	}
	if err := m.Remove(); err != nil {
		return "", err
	}
	return what, os.Remove(filepath.Join(dir, rundir.Memcg))
}
