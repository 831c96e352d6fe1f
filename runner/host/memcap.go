package host

import (
	"errors"
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

// Memcap is --mem-limit: the workers' memory cgroup, the model of what each
// connection is charged to it, the prediction made from that model before the
// first connection, and the watch that stops opening before the cap.
type Memcap struct {
	Dir   string // the run directory
	Limit uint64 // the cap
	Log   io.Writer
	// Result is what the cap saw: made by Apply, finished by Finish.
	Result *MemcapResult

	cg       *Memcg
	perConn  float64 // charged per connection: the model's, then as measured
	model    float64 // the model's charge (slabmodel.MemcgCharge)
	why      string  // how the model reckoned it
	inflight int     // connects that may land after a stop
	// The charge measured between two counts on this kernel (what it
	// charges depends on it: from 6.12 an accepted socket is charged to the
	// accepting task's cgroup), and the prediction made again from it.
	measured              float64
	firstAt, measuredOver uint64
	firstUse              uint64
	modelPredicted        uint64
	// On cgroup v2 a socket's buffer memory is charged to the cgroup of
	// the task that made it (mem_cgroup_charge_skmem; v1 only with tcp
	// accounting on, which the run leaves off), a page at least while a
	// message waits in it: the exchange needs that room below the cap, a
	// page for each charged end (accepted sockets too where the kernel
	// charges them).
	bufferPages  int
	acceptedSock uint64 // the accepted end's sock object size

	baseline  uint64 // charged with the workers up and idle
	predicted uint64
	peak      uint64
	lastEst   uint64
	lastMove  time.Time
	rateAt    time.Time
	rateEst   uint64
	rate      float64 // connections per second
}

// ErrNoSlabSizes: without /proc/slabinfo (root) a connection's charge to the
// cap cannot be priced.
var ErrNoSlabSizes = errors.New("--mem-limit needs /proc/slabinfo (root) to predict the cap")

// NewMemcap prices a connection for the cap from the slab object sizes
// (none without them: Check refuses it).
func NewMemcap(slabObjSize map[string]uint64, inflight int) *Memcap {
	perConn, why := slabmodel.MemcgCharge(slabObjSize)
	return &Memcap{perConn: perConn, model: perConn, why: why, inflight: inflight, acceptedSock: slabObjSize[slabmodel.SoftirqSock]}
}

// MemcapName names the memory cap's change.
const MemcapName = "memory cgroup"

func (m *Memcap) Name() string { return MemcapName }

// Check refuses a cap this host cannot make or price.
func (m *Memcap) Check() error {
	if m.perConn == 0 {
		return ErrNoSlabSizes
	}
	if _, err := FindMemcgParent(); err != nil {
		return fmt.Errorf("--mem-limit: %w", err)
	}
	return nil
}

// Apply makes the cgroup, naming it in the run directory first (like the
// sysctl journal) so that `restore` removes it after a SIGKILL.
func (m *Memcap) Apply() error {
	name := fmt.Sprintf("c10mprobe-%d-%d", os.Getpid(), time.Now().UnixNano())
	place, err := FindMemcgParent()
	if err != nil {
		return err
	}
	path := filepath.Join(place.Parent, name)
	if err := os.WriteFile(filepath.Join(m.Dir, rundir.Memcg), []byte(path+"\n"), 0o644); err != nil {
		return err
	}
	if m.cg, err = NewMemcg(place, path, m.Limit); err != nil {
		return err
	}
	version := 1
	if m.cg.v2 {
		version = 2
	}
	fmt.Fprintf(m.Log, "memory cgroup %s (v%d) capped at %s\n", m.cg.dir, version, units.Bytes(m.Limit))
	m.Result = &MemcapResult{LimitBytes: m.Limit, Cgroup: m.cg.dir, Version: version}
	return nil
}

// Add moves a process into the cap's cgroup.
func (m *Memcap) Add(pid int) error { return m.cg.Add(pid) }

// Predict is read when the workers are up and idle: what they hold of the
// cap already, and how many connections fit in the rest at the model's cost.
func (m *Memcap) Predict() {
	base := m.cg.Usage()
	m.baseline = base
	if m.cg.v2 {
		m.bufferPages = 1 // the connecting end's; the model has the accepted end uncharged
	}
	room := memcapStop*float64(m.cg.limit) - float64(base)
	if room > 0 {
		m.predicted = uint64(room / m.cost())
	}
	m.modelPredicted = m.predicted
	fmt.Fprintf(m.Log, "memory cap %s: the workers hold %s of it; predicted ≈ %d connections at %.0f B charged each (%s)%s up to %.0f %% of the cap\n",
		units.Bytes(m.cg.limit), units.Bytes(base), m.predicted, m.perConn, m.why, m.bufferNote(), 100*memcapStop)
}

// cost is what a connection takes of the cap: its objects, and the buffer
// pages its exchange needs.
func (m *Memcap) cost() float64 { return m.perConn + float64(m.bufferPages*pageSize) }

// pageSize is the unit socket memory is charged in (SK_MEM_QUANTUM).
const pageSize = 4096

func (m *Memcap) bufferNote() string {
	if m.bufferPages == 0 {
		return ""
	}
	return fmt.Sprintf(", and %d buffer page(s) of 4 KiB for its exchange (cgroup v2 charges socket buffers)", m.bufferPages)
}

// The charge is measured between two counts, before the cap is near: past
// the first connections' fixed costs (slab pages begun, the workers' first
// allocations), over enough to be many MiB.
func (m *Memcap) measureFrom() uint64 { return max(2000, m.modelPredicted/10) }
func (m *Memcap) measureTo() uint64   { return max(6000, m.modelPredicted/3) }

// measure takes the charge a connection costs on this kernel between two
// counts and predicts again from it, once.
func (m *Memcap) measure(established, use uint64) {
	if m.measuredOver > 0 || established < m.measureFrom() {
		return
	}
	if m.firstAt == 0 {
		m.firstAt, m.firstUse = established, use
		return
	}
	if established < m.measureTo() || use <= m.firstUse {
		return
	}
	m.measured = float64(use-m.firstUse) / float64(established-m.firstAt)
	m.measuredOver = established
	// The first connections cost more than the rest (slab pages begun), so
	// the measure tells which objects this kernel charges, and the model
	// prices them: the accepted end's sock is charged too from 6.12 (commit
	// 58e41754e416), and with it, on v2, its buffer.
	how := "as the model has it"
	// What the first connections' fixed costs add stays under three
	// quarters of a sock (1.1 KiB of a 2.3 KiB TCP sock on 6.18, cgroup v1,
	// measured over a twentieth to a fifth of the cap); a charged sock adds
	// all of it (2.4 KiB on 6.12).
	if m.measured-m.model >= 0.75*float64(m.acceptedSock) {
		m.perConn = m.model + float64(m.acceptedSock+slabmodel.ObjcgPointer)
		how = fmt.Sprintf("this kernel charges the accepted socket too: %.0f B", m.perConn)
		if m.bufferPages > 0 {
			m.bufferPages = 2
		}
	}
	room := memcapStop*float64(m.cg.limit) - float64(use) - float64(established)*float64(m.bufferPages*pageSize)
	m.predicted = established + uint64(max(0, room)/m.cost())
	fmt.Fprintf(m.Log, "memory cap %s: measured %.0f B charged a connection from %s to %s against the model's %.0f: %s%s; predicted ≈ %d connections\n",
		units.Bytes(m.cg.limit), m.measured, units.Count(m.firstAt), units.Count(established), m.model, how, m.bufferNote(), m.predicted)
}

// Watch checks the cap every memcapPoll until done, stopping the run when
// check says so.
func (m *Memcap) Watch(done <-chan struct{}, established func() uint64, stop func(limit.Kind, string)) {
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
func (m *Memcap) check(established uint64, now time.Time) string {
	use := m.cg.Usage()
	m.peak = max(m.peak, use)
	m.measure(established, use)
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
	// What the connections open will need for their exchange counts as used.
	projected := float64(use) + float64(established)*float64(m.bufferPages*pageSize) + m.cost()*(m.rate*memcapLead.Seconds()+float64(m.inflight))
	if established > m.lastEst {
		m.lastEst, m.lastMove = established, now
	}
	hits, ooms := m.cg.Events()
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

// Finish fills the cap's part of the result.
func (m *Memcap) Finish(established uint64, stoppedBy limit.Kind) {
	res := m.Result
	if res == nil {
		return
	}
	res.StopShare, res.BaselineBytes, res.ChargePerConnection = memcapStop, m.baseline, m.model
	res.ModelPredictedConnections, res.PredictedConnections = m.modelPredicted, m.predicted
	if m.measuredOver > 0 {
		res.MeasuredChargePerConnection, res.MeasuredOver = m.measured, m.measuredOver
	}
	res.PredictionChargePerConnection = m.perConn
	res.ExchangeRoomBytes = uint64(m.bufferPages*pageSize) * established
	res.ActualConnections = established
	res.PeakUsageBytes = m.peak
	res.LimitHits, res.OOMKills = m.cg.Events()
	res.StoppedBy = stoppedBy
}

// Undo deletes the cgroup, once the run's processes are out of it, and its
// name in the run directory.
func (m *Memcap) Undo() error {
	if m.cg == nil {
		return nil
	}
	if err := m.cg.Remove(); err != nil {
		return err
	}
	m.cg = nil
	return os.Remove(filepath.Join(m.Dir, rundir.Memcg))
}

// MemcapResult is what the run's memory cgroup saw.
type MemcapResult struct {
	LimitBytes          uint64  `json:"limit_bytes"`
	StopShare           float64 `json:"stop_share"`                 // opening stops at this share of the cap
	BaselineBytes       uint64  `json:"baseline_bytes"`             // charged with the workers up and idle
	ChargePerConnection float64 `json:"model_bytes_per_connection"` // the model's charge, for the prediction
	// The model's prediction, printed before the first connection; the
	// prediction made again from the charge measured over the first
	// connections (the same where none was measured).
	ModelPredictedConnections uint64 `json:"model_predicted_connections"`
	PredictedConnections      uint64 `json:"predicted_connections"`
	// The charge a connection as measured on this kernel's first
	// connections, and at how many; the charge the prediction used.
	MeasuredChargePerConnection   float64 `json:"measured_bytes_per_connection,omitempty"`
	MeasuredOver                  uint64  `json:"measured_over_connections,omitempty"`
	PredictionChargePerConnection float64 `json:"prediction_bytes_per_connection"`
	// ExchangeRoomBytes is what opening left below the stop for the
	// connections' buffers during the exchange (cgroup v2).
	ExchangeRoomBytes uint64     `json:"exchange_room_bytes"`
	ActualConnections uint64     `json:"actual_connections"`
	StoppedBy         limit.Kind `json:"stopped_by"` // the limit kind, or limit.Complete
	PeakUsageBytes    uint64     `json:"peak_usage_bytes"`
	LimitHits         uint64     `json:"limit_hits"` // v1 failcnt, v2 memory.events max
	OOMKills          uint64     `json:"oom_kills"`
	Cgroup            string     `json:"cgroup"`
	Version           int        `json:"cgroup_version"`
}
