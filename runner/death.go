package runner

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/c10mprobe/c10mprobe/internal/phase"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// Death is a worker that died before the run told it to exit, and what the
// run held around it: by the workers' reports just before (its own last
// report included) the verified connections, or during the connect phase
// the established ones its servers had accepted; and at both ends by
// sock_diag once its sockets were gone. The run's per-connection figures divide by
// what was held when they were measured, never by what was left.
type Death struct {
	Role  string `json:"role"`
	Index int    `json:"index"`
	PID   int    `json:"pid"`
	How   string `json:"how"` // "killed by SIGKILL", "exit status 2"
	// OOMKill: /proc/vmstat's oom_kill rose since the run began, so the
	// OOM killer is the likeliest sender of a SIGKILL.
	OOMKill      bool        `json:"oom_kill"`
	OOMKills     uint64      `json:"oom_kills_since_start,omitempty"`
	Phase        phase.Phase `json:"phase"`
	AfterSeconds float64     `json:"after_seconds"` // since the workers started
	HeldBefore   uint64      `json:"held_before"`
	HeldAfter    *uint64     `json:"held_after"` // nil: sock_diag could not count
	Lost         uint64      `json:"lost"`
}

// When says when it died: during a phase, or as it started.
func (d Death) When() string {
	if d.Phase == "" {
		return "as it started"
	}
	return "during " + string(d.Phase)
}

// Worker names the worker as the run's lines do.
func (d Death) Worker() string { return fmt.Sprintf("%s worker %d (pid %d)", d.Role, d.Index, d.PID) }

// deathState is what the run knows of its workers' deaths: the phase
// under way (set as each begins) and each death, in order. Runner.mu
// guards it.
type deathState struct {
	began           time.Time
	oomKillsAtStart uint64 // /proc/vmstat oom_kill as the run began
	phaseNow        phase.Phase
	deaths          []Death
}

// recordDeath notes a worker that died unasked. r.mu is held.
func (r *Runner) recordDeath(p *proc) {
	// Before the exchange nothing is verified yet: what was held is what
	// both ends had, the accepted connections the clients established.
	t := r.totalsLocked()
	held := t.verified
	if r.phaseNow == PhaseConnect || r.phaseNow == PhaseIdle {
		held = min(t.clientEstablished, t.accepted)
	}
	d := Death{Role: string(p.role), Index: p.index, PID: p.pid, How: p.state.String(),
		Phase: r.phaseNow, HeldBefore: held}
	if !r.began.IsZero() {
		d.AfterSeconds = time.Since(r.began).Seconds()
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		d.How = "killed by " + unix.SignalName(ws.Signal())
		if ws.Signal() == syscall.SIGKILL {
			if vm, err := procfs.ReadVmstat(); err == nil && vm["oom_kill"] > r.oomKillsAtStart {
				d.OOMKill, d.OOMKills = true, vm["oom_kill"]-r.oomKillsAtStart
			}
		}
	}
	r.deaths = append(r.deaths, d)
}

// heldAfterDeaths writes what sock_diag counted after the deaths into
// each that lacks it. r.mu is held.
func (r *Runner) heldAfterDeaths(held uint64) {
	for i := range r.deaths {
		if d := &r.deaths[i]; d.HeldAfter == nil {
			d.HeldAfter = &held
			d.Lost = d.HeldBefore - min(d.HeldBefore, held)
		}
	}
}
