package host

// Pacing a smaller machine's opening. Past the point where it swaps, every
// connection's slab comes from direct reclaim writing the machine's other
// programs to swap, and as fast as the workers open, every task waits on
// it: PSI full rises with the opening's pace, not with what the machine
// holds. On this project's 8 GiB machine with a 3 GiB ballast and 2 GiB of
// swap, opening at full speed stopped on PSI at 606,114 connections with
// 512 MiB free above the min watermark and 995 MiB of swap cache already
// written, room for some 794k (2026-12-07, docs/smaller-machines.md).
// Holding the opening while the machine's tasks stall lets kswapd catch up;
// the run then ends where memory does, and PSI stops it only where the
// machine stalls with nothing being opened.

import (
	"fmt"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
)

const (
	// paceWindow is the span the pacing reads PSI over: short, so that
	// the opening holds long before the guard's 10 s share climbs.
	paceWindow = time.Second
	// paceHoldAt is the PSI full share of the last second at which the
	// opening holds, paceReleaseAt the one below which it goes on.
	paceHoldAt    = 20.0
	paceReleaseAt = 5.0
	// paceMaxHold: a machine whose tasks still stall this long after the
	// opening held is thrashing on what it holds, not on what is opened.
	paceMaxHold = 30 * time.Second
)

// pacer is the machine's record of its holds.
type pacer struct {
	holding bool
	since   time.Time     // the hold's start
	held    time.Duration // the holds before it, together
	holds   int
	share   float64 // PSI full share of the last second, at the last look
}

// Pace says whether the opening should hold now, from PSI's last second,
// and whether that changed.
func (ma *Machine) Pace(now time.Time) (hold, changed bool) {
	was := ma.pace.holding
	if share, ok := ma.Pressure.ShareOver(paceWindow); ok {
		if ma.pace.step(now, share) && ma.pace.holds == 1 {
			fmt.Fprintf(ma.Log, "machine: every task waited for memory %.0f %% of the last second (PSI full): the opening holds while reclaim catches up, and goes on below %.0f %%\n", share, paceReleaseAt)
		}
	}
	return ma.pace.holding, ma.pace.holding != was
}

// step takes the PSI full share of the last second: the opening holds once
// every task waited on memory paceHoldAt of it, and goes on once, a second
// or more into the hold, they waited less than paceReleaseAt. began says
// a hold began.
func (p *pacer) step(now time.Time, share float64) (began bool) {
	p.share = share
	switch {
	case !p.holding && share >= paceHoldAt:
		p.holding, p.since = true, now
		p.holds++
		return true
	case p.holding && now.Sub(p.since) >= paceWindow && share < paceReleaseAt:
		p.holding = false
		p.held += now.Sub(p.since)
	}
	return false
}

// Held is how long the opening has held, the current hold included: time
// in which no connection opening is no stall of the run.
func (ma *Machine) Held() time.Duration { return ma.pace.heldAt(time.Now()) }

func (p *pacer) heldAt(now time.Time) time.Duration {
	if p.holding {
		return p.held + now.Sub(p.since)
	}
	return p.held
}

// heldTooLong stops a run whose machine stalls on memory paceMaxHold after
// the opening held: it thrashes on what it holds.
func (ma *Machine) heldTooLong() (limit.Kind, string) { return ma.pace.tooLong(time.Now()) }

func (p *pacer) tooLong(now time.Time) (limit.Kind, string) {
	if !p.holding || now.Sub(p.since) < paceMaxHold {
		return "", ""
	}
	return limit.MemoryPressure, fmt.Sprintf("the opening held for %s and every task still waited for memory %.0f %% of the last second (PSI full): the machine thrashes on what it holds; stopped before it stalls",
		now.Sub(p.since).Round(time.Second), p.share)
}
