// Package sysctl changes kernel parameters for the length of a run and puts
// them back. Every change is written to a journal file before it is made, so
// that `c10mprobe restore RUNDIR` can undo a run that was SIGKILLed.
package sysctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/c10mprobe/c10mprobe/internal/nshop"
)

// Dir is where sysctls live; tests may point it elsewhere.
var Dir = "/proc/sys"

// Path maps a dotted key (net.core.somaxconn) to its /proc/sys file.
func Path(key string) string {
	return filepath.Join(Dir, strings.ReplaceAll(key, ".", "/"))
}

// initialOnly are the net.* keys the kernel shows in the initial network
// namespace alone (net_core_table in net/core/sysctl_net_core.c, not
// netns_core_table): host-wide, and invisible to a run in a namespace of
// its own, which reads and writes them from the initial one.
var initialOnly = map[string]bool{"net.core.netdev_max_backlog": true}

// HostWide says key is a net.* key of the initial network namespace alone:
// set from any namespace, it is the host's.
func HostWide(key string) bool { return initialOnly[key] }

// Read returns a sysctl's value with its fields separated by single spaces.
func Read(key string) (string, error) {
	var data []byte
	err := inItsNamespace(key, func() (err error) {
		data, err = os.ReadFile(Path(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	return Normalize(string(data)), nil
}

// Normalize collapses the tabs and newline the kernel prints into single spaces.
func Normalize(v string) string { return strings.Join(strings.Fields(v), " ") }

func write(key, value string) error {
	if err := inItsNamespace(key, func() error { return os.WriteFile(Path(key), []byte(value), 0) }); err != nil {
		return fmt.Errorf("writing sysctl %s=%q: %w", key, value, err)
	}
	return nil
}

// inItsNamespace runs f where key is seen: for a key of the initial network
// namespace alone, read from another namespace, on a thread that has
// joined the initial one (nshop: /proc/sys/net resolves by the calling
// thread's namespace).
func inItsNamespace(key string, f func() error) error {
	if !HostWide(key) || Dir != "/proc/sys" {
		return f() // no namespace to look up for every other key
	}
	own, _ := os.Readlink("/proc/thread-self/ns/net")
	initial, _ := os.Readlink("/proc/1/ns/net")
	if own == initial || initial == "" {
		return f()
	}
	return nshop.Do("/proc/1/ns/net", f)
}

// Check says in one sentence why key cannot be set by this process, or nil.
func Check(key string) error {
	if key == "" || strings.ContainsAny(key, "/ ") || strings.Contains(key, "..") {
		return fmt.Errorf("%q is not a sysctl name (want dotted form such as net.ipv4.tcp_rmem)", key)
	}
	var st os.FileInfo
	err := inItsNamespace(key, func() (err error) {
		st, err = os.Stat(Path(key))
		return err
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sysctl %s does not exist on this kernel", key)
		}
		return fmt.Errorf("checking sysctl %s: %w", key, err)
	}
	if st.IsDir() {
		return fmt.Errorf("sysctl %s is a directory, not a parameter", key)
	}
	if st.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("sysctl %s is read-only", key)
	}
	return nil
}

// CheckValue says in one sentence why value cannot be key's, or nil. Where
// the current value is whole numbers, the new one must be as many whole
// numbers: the kernel would refuse anything else, but only once the run had
// changed the host.
func CheckValue(key, value string) error {
	cur, err := Read(key)
	if err != nil {
		return err
	}
	want := strings.Fields(cur)
	for _, f := range want {
		if _, err := strconv.ParseInt(f, 10, 64); err != nil {
			return nil // not numeric: the kernel alone can say
		}
	}
	got := strings.Fields(value)
	ok := len(got) == len(want)
	for _, f := range got {
		if _, err := strconv.ParseInt(f, 10, 64); err != nil {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s=%q is not %d whole number(s) like its current value %q", key, value, len(want), cur)
	}
	return nil
}

// Change is one sysctl write and whether it has been undone.
type Change struct {
	Key      string `json:"key"`
	Old      string `json:"old"`
	New      string `json:"new"`
	Restored bool   `json:"restored"`
	// LeftAlone is the value found at restore when someone changed it since
	// the run set it: theirs stands, and Old is not written back.
	LeftAlone string `json:"left_alone,omitempty"`
	// Netns is the network namespace a net.* key was set in ("net:[4026…]"):
	// /proc/sys/net shows the writer's own namespace's values. A restore
	// from another namespace leaves it: the host's value never changed, and
	// a run's private namespace ends with the run.
	Netns string `json:"netns,omitempty"`
}

// netnsOf is the network namespace a key's value belongs to, read from
// this process; "" for a key that is not per namespace.
func netnsOf(key string) string {
	if !strings.HasPrefix(key, "net.") || HostWide(key) {
		return ""
	}
	// The calling thread's: /proc/self is the main thread's, which a
	// goroutine that joined another namespace may have left there (the
	// runtime wedges the main thread where it would end any other).
	ns, _ := os.Readlink("/proc/thread-self/ns/net")
	return ns
}

// Journal records changes in a file as they are made.
type Journal struct {
	path    string
	mu      sync.Mutex
	changes []Change
}

// NewJournal starts an empty journal that will live at path.
func NewJournal(path string) *Journal { return &Journal{path: path} }

// Path is where the journal lives.
func (j *Journal) Path() string { return j.path }

// LoadJournal reads the journal a run left behind.
func LoadJournal(path string) (*Journal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading sysctl journal: %w", err)
	}
	j := &Journal{path: path}
	if err := json.Unmarshal(data, &j.changes); err != nil {
		return nil, fmt.Errorf("parsing sysctl journal %s: %w", path, err)
	}
	return j, nil
}

// Set changes key to value. The old value is journaled before the write, so
// a crash between the two leaves a harmless restore of an unchanged value.
// Setting a key to the value it already has records nothing.
func (j *Journal) Set(key, value string) (Change, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	old, err := Read(key)
	if err != nil {
		return Change{}, err
	}
	value = Normalize(value)
	c := Change{Key: key, Old: old, New: value, Netns: netnsOf(key)}
	if old == value {
		c.Restored = true
		return c, nil
	}
	j.changes = append(j.changes, c)
	if err := j.persist(); err != nil {
		j.changes = j.changes[:len(j.changes)-1]
		return Change{}, err
	}
	if err := write(key, value); err != nil {
		j.changes[len(j.changes)-1].Restored = true
		_ = j.persist()
		return Change{}, err
	}
	// The kernel may clamp or reformat what it is given; record what it holds.
	if now, err := Read(key); err == nil {
		j.changes[len(j.changes)-1].New = now
		c.New = now
	}
	return c, j.persist()
}

// Restore writes back every change not yet restored, newest first, and
// returns the errors of those it could not restore.
func (j *Journal) Restore() error { return j.restore("") }

// RestoreKey restores key's changes alone, ahead of the rest: huge pages
// given back before a swapfile is turned off, which may need the room.
func (j *Journal) RestoreKey(key string) error { return j.restore(key) }

func (j *Journal) restore(only string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for i := len(j.changes) - 1; i >= 0; i-- {
		c := &j.changes[i]
		if c.Restored || (only != "" && c.Key != only) || (c.Netns != "" && c.Netns != netnsOf(c.Key)) {
			continue
		}
		if now, err := Read(c.Key); err == nil && now != c.New && now != c.Old {
			c.LeftAlone, c.Restored = now, true
			continue
		}
		if err := write(c.Key, c.Old); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Restored = true
	}
	if err := j.persist(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Changes returns a copy of the journal.
func (j *Journal) Changes() []Change {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Change(nil), j.changes...)
}

func (j *Journal) persist() error {
	data, err := json.MarshalIndent(j.changes, "", "  ")
	if err != nil {
		return err
	}
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing sysctl journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("writing sysctl journal: %w", err)
	}
	return nil
}
