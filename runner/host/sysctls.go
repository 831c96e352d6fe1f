package host

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/c10mprobe/c10mprobe/internal/sysctl"
)

// Sysctl is one KEY=VALUE a run sets.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SysctlsName names the sysctls' change.
const SysctlsName = "sysctls"

// Sysctls are the sysctls a run sets, in order: the accept backlog it
// raises, then --port-range and --sysctl. Each old value is written into
// the run's journal before the new one into the kernel.
type Sysctls struct {
	Journal *sysctl.Journal
	Set     []Sysctl
	Log     io.Writer
}

func (s *Sysctls) Name() string { return SysctlsName }

// Check refuses a key the kernel lacks or a value it would refuse.
func (s *Sysctls) Check() error {
	for _, kv := range s.Set {
		if err := sysctl.Check(kv.Key); err != nil {
			return fmt.Errorf("--sysctl: %v", err)
		}
		if err := sysctl.CheckValue(kv.Key, kv.Value); err != nil {
			return fmt.Errorf("--sysctl: %v", err)
		}
	}
	return nil
}

// Apply sets each, and says which changed.
func (s *Sysctls) Apply() error {
	for _, kv := range s.Set {
		c, err := s.Journal.Set(kv.Key, kv.Value)
		if err != nil {
			return err
		}
		if c.Old != c.New {
			fmt.Fprintf(s.Log, "sysctl %s: %s → %s (restored at exit)\n", c.Key, c.Old, c.New)
		}
	}
	return nil
}

// restoreJournal restores what a killed run's journal at path holds (key's
// changes alone, unless key is ""); a run that journaled nothing has none.
func restoreJournal(path, key string) error {
	j, err := sysctl.LoadJournal(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if key != "" {
		return j.RestoreKey(key)
	}
	return j.Restore()
}

// Undo writes back every value the journal holds: these, and any other
// change that set a sysctl through it.
func (s *Sysctls) Undo() error { return s.Journal.Restore() }
