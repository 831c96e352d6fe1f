package analysis

import (
	"fmt"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// deathSentence says which workers died, how, when, and what the run held
// before and after: the figures that follow are from the peak, divided by
// what was held when they were measured.
func deathSentence(r Run) string {
	var parts []string
	for _, d := range r.Deaths {
		how := "exited (" + d.How + ")"
		if strings.HasPrefix(d.How, "killed by") {
			how = "was " + d.How
		}
		how += " " + d.When
		switch {
		case d.OOMKill:
			how += ", by the OOM killer (oom_kill rose in /proc/vmstat)"
		case strings.Contains(d.How, "SIGKILL"):
			how += " (not by the OOM killer: oom_kill did not rise)"
		}
		s := fmt.Sprintf("%s %s, with %s connections verified before it", d.Worker, how, units.Count(d.HeldBefore))
		if d.Counted {
			s += fmt.Sprintf(" and %s held at both ends after (sock_diag): %s lost with it", units.Count(d.HeldAfter), units.Count(d.HeldBefore-min(d.HeldBefore, d.HeldAfter)))
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ") + fmt.Sprintf("; the figures below are from the peak, %s connections held", units.Count(r.Connections))
}
