package runner

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// memcapStop is the share of the cap at which opening stops: the exchange
// and the close still need a little memory inside the cgroup.
const memcapStop = 0.97

// The cap is polled often, and usage projected a little ahead: a stop takes
// a poll and a control message to reach the workers.
const (
	memcapPoll = 10 * time.Millisecond
	memcapLead = 30 * time.Millisecond
)

// memcapStall is how long progress may stop near the cap before the run
// calls it: at its cap the kernel reclaims and stalls instead of failing
// (no failcnt, no OOM kill, connects slow to a crawl).
const memcapStall = 2 * time.Second

// memcap is --mem-limit: the workers' memory cgroup, the model of what each
// connection is charged to it, the prediction made from that model before the
// first connection, and the watch that stops opening before the cap.
type memcap struct {
	cg       *memcg
	perConn  float64 // charged per connection (slabmodel.MemcgCharge)
	why      string  // how perConn was reckoned
	inflight int     // connects that may land after a stop

	baseline  uint64 // charged with the workers up and idle
	predicted uint64
	peak      uint64
	lastEst   uint64
	lastMove  time.Time
	rateAt    time.Time
	rateEst   uint64
	rate      float64 // connections per second
}

// newMemcap prices a connection for the cap; it fails without slab object
// sizes to price it from.
func newMemcap(h Host, inflight int) (*memcap, error) {
	perConn, why := slabmodel.MemcgCharge(h.SlabObjSize)
	if perConn == 0 {
		return nil, badInput("--mem-limit needs /proc/slabinfo (root) to predict the cap")
	}
	return &memcap{perConn: perConn, why: why, inflight: inflight}, nil
}

// create makes the cgroup, naming it in the run directory first (like the
// sysctl journal) so that `restore` removes it after a SIGKILL.
func (m *memcap) create(dir string, limitBytes uint64, log io.Writer) (*MemcapResult, error) {
	name := fmt.Sprintf("c10mprobe-%d-%d", os.Getpid(), time.Now().UnixNano())
	parent, _, err := findMemcgParent()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, rundir.Memcg), []byte(filepath.Join(parent, name)+"\n"), 0o644); err != nil {
		return nil, err
	}
	if m.cg, err = newMemcg(name, limitBytes); err != nil {
		return nil, err
	}
	version := 1
	if m.cg.v2 {
		version = 2
	}
	fmt.Fprintf(log, "memory cgroup %s (v%d) capped at %s\n", m.cg.dir, version, units.Bytes(limitBytes))
	return &MemcapResult{LimitBytes: limitBytes, Cgroup: m.cg.dir, Version: version}, nil
}

// predict is read when the workers are up and idle: what they hold of the
// cap already, and how many connections fit in the rest at the model's cost.
func (m *memcap) predict(log io.Writer) {
	base := m.cg.usage()
	m.baseline = base
	room := memcapStop*float64(m.cg.limit) - float64(base)
	if room > 0 {
		m.predicted = uint64(room / m.perConn)
	}
	fmt.Fprintf(log, "memory cap %s: the workers hold %s of it; predicted ≈ %d connections at %.0f B charged each (%s) up to %.0f %% of the cap\n",
		units.Bytes(m.cg.limit), units.Bytes(base), m.predicted, m.perConn, m.why, 100*memcapStop)
}

// watch checks the cap every memcapPoll until done, stopping the run when
// check says so.
func (m *memcap) watch(done <-chan struct{}, established func() uint64, stop func(limit.Kind, string)) {
	t := time.NewTicker(memcapPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if detail := m.check(established(), time.Now()); detail != "" {
				stop(limit.Memcap, detail)
			}
		}
	}
}

// check says why opening must stop, or "": the cgroup at its cap with
// progress stalled, usage projected past the stop, or its OOM killer acting.
func (m *memcap) check(established uint64, now time.Time) string {
	use := m.cg.usage()
	m.peak = max(m.peak, use)
	if m.lastMove.IsZero() {
		m.lastMove = now
	}
	// Where usage will be by the time a stop reaches every worker: at
	// 30,000 connections a second, 100 ms is 16 MB, 6 % of a 256 MiB cap,
	// and the cgroup's OOM killer acts at 100 %.
	// Workers report every 100 ms, so the count moves in steps: the rate is
	// taken over windows of at least 250 ms.
	if dt := now.Sub(m.rateAt); dt >= 250*time.Millisecond {
		if !m.rateAt.IsZero() {
			m.rate = float64(established-min(established, m.rateEst)) / dt.Seconds()
		}
		m.rateAt, m.rateEst = now, established
	}
	projected := float64(use) + m.perConn*(m.rate*memcapLead.Seconds()+float64(m.inflight))
	if established > m.lastEst {
		m.lastEst, m.lastMove = established, now
	}
	hits, ooms := m.cg.events()
	limitBytes := m.cg.limit
	switch {
	case ooms > 0:
		return fmt.Sprintf("the memory cgroup's OOM killer acted (%d kills) at its cap of %s", ooms, units.Bytes(limitBytes))
	case projected >= memcapStop*float64(limitBytes):
		// Before the cgroup's OOM killer takes workers and what they hold.
		return fmt.Sprintf("the memory cgroup reached %s of its %s cap (%d limit hits)", units.Bytes(use), units.Bytes(limitBytes), hits)
	case float64(use) >= 0.90*float64(limitBytes) && now.Sub(m.lastMove) > memcapStall:
		return fmt.Sprintf("the memory cgroup is at %s of its %s cap and no connection completed for %s: the kernel is reclaiming instead of failing (%d limit hits)",
			units.Bytes(use), units.Bytes(limitBytes), memcapStall, hits)
	}
	return ""
}

// finish fills the cap's part of the result.
func (m *memcap) finish(res *MemcapResult, established uint64, stoppedBy string) {
	res.StopShare, res.BaselineBytes, res.ChargePerConnection = memcapStop, m.baseline, m.perConn
	res.PredictedConnections = m.predicted
	res.ActualConnections = established
	res.PeakUsageBytes = m.peak
	res.LimitHits, res.OOMKills = m.cg.events()
	res.StoppedBy = stoppedBy
}

// remove deletes the cgroup and its name in the run directory.
func (m *memcap) remove(dir string) error {
	if m.cg == nil {
		return nil
	}
	if err := m.cg.remove(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, rundir.Memcg))
}
