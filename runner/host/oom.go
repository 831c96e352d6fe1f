package host

import (
	"os"
	"strings"
)

// OOMShield keeps the OOM killer off the run's parent, which holds the
// journal and puts the host back: killed, it would leave the host changed.
// It lowers its own oom_score_adj to −1000 where it may (lowering needs
// CAP_SYS_RESOURCE); its workers and ballast, which inherit the value at
// fork, raise theirs to 1000 as they start (raising needs nothing), so
// that under memory pressure the kernel takes a worker, not the parent.
// Where it may not, the guards keep the run from the OOM killer.
type OOMShield struct {
	Shielded bool // the parent's is −1000
}

// Shield lowers this process's oom_score_adj to −1000 if it may.
func (s *OOMShield) Shield() {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return
	}
	s.Shielded = strings.TrimSpace(string(data)) == "-1000" || os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0) == nil
}
