package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// OOMShield keeps the OOM killer off the run's parent, which holds the
// journal and puts the host back: killed, it would leave the host changed.
// It lowers its own oom_score_adj to −1000 where it may (lowering needs
// CAP_SYS_RESOURCE); its children, which inherit the value at fork, get
// back the one it had, so that under memory pressure the kernel takes a
// worker, not the parent. Where it may not, the guards keep the run from
// the OOM killer.
type OOMShield struct {
	old      string // the parent's oom_score_adj before
	Shielded bool   // the parent's is −1000
}

// Shield lowers this process's oom_score_adj to −1000 if it may.
func (s *OOMShield) Shield() {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return
	}
	s.old = strings.TrimSpace(string(data))
	s.Shielded = s.old == "-1000" || os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0) == nil
}

// Child gives a child process the parent's old oom_score_adj back (raising
// it needs no capability).
func (s *OOMShield) Child(pid int) error {
	if !s.Shielded || s.old == "" || s.old == "-1000" {
		return nil
	}
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(s.old), 0); err != nil {
		return fmt.Errorf("giving process %d the oom_score_adj %s: %w", pid, s.old, err)
	}
	return nil
}
