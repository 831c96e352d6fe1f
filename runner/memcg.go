package runner

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
)

// memcg is the run's memory cgroup: cgroup v2 where the unified hierarchy
// has the memory controller, the v1 memory controller otherwise. Socket slab
// is charged to it (kmem accounting), so its cap limits what the article's
// machine ran out of.
type memcg struct {
	dir   string
	v2    bool
	limit uint64
}

// memcg file names by version.
func (m *memcg) file(v1, v2 string) string {
	if m.v2 {
		return filepath.Join(m.dir, v2)
	}
	return filepath.Join(m.dir, v1)
}

// findMemcgParent returns where the run's cgroup goes: under this process's
// own memory cgroup, so the host's hierarchy and its limits still apply.
func findMemcgParent() (dir string, v2 bool, err error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	var v1Path, v2Path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1Path = parts[2]
		}
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err == nil && strings.Contains(" "+strings.TrimSpace(string(data))+" ", " memory ") && v2Path != "" {
			return filepath.Join(root, v2Path), true, nil
		}
	}
	if v1Path != "" {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
			return filepath.Join("/sys/fs/cgroup/memory", v1Path), false, nil
		}
	}
	return "", false, errors.New("no memory cgroup controller: neither cgroup v2 with memory nor the v1 memory hierarchy is mounted")
}

// newMemcg creates the run's cgroup with its cap.
func newMemcg(name string, limit uint64) (*memcg, error) {
	parent, v2, err := findMemcgParent()
	if err != nil {
		return nil, err
	}
	m := &memcg{dir: filepath.Join(parent, name), v2: v2, limit: limit}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating memory cgroup: %w", err)
	}
	limitFile := m.file("memory.limit_in_bytes", "memory.max")
	if err := os.WriteFile(limitFile, []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		m.remove()
		return nil, fmt.Errorf("setting %s: %w", limitFile, err)
	}
	if m.v2 {
		// No swap for the run's own pages beyond what the machine has: the
		// cap is on RAM, as on the smaller machine it stands for.
		_ = os.WriteFile(filepath.Join(m.dir, "memory.swap.max"), []byte("max"), 0)
	}
	return m, nil
}

// add moves a process into the cgroup.
func (m *memcg) add(pid int) error {
	if err := os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("moving pid %d into %s: %w", pid, m.dir, err)
	}
	return nil
}

// usage is what is charged to the cgroup now.
func (m *memcg) usage() uint64 {
	v, _ := procfs.ReadInt(m.file("memory.usage_in_bytes", "memory.current"))
	return uint64(max(0, v))
}

// events returns how often the cap was hit and how many OOM kills it caused.
func (m *memcg) events() (hits, oomKills uint64) {
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

// remove deletes the cgroup once its processes are gone; charges left by
// freed sockets do not keep it (the kernel reparents them).
func (m *memcg) remove() error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(m.dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("removing memory cgroup %s: %w", m.dir, err)
}
