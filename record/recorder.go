package record

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/phase"
	"os"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/runner"
)

// PhaseSample is what the host and the probes showed when a phase ended.
// samples.json holds them; explain and export work from it.
type PhaseSample struct {
	Phase       runner.Phase                `json:"phase"`
	Time        time.Time                   `json:"time"`
	Established uint64                      `json:"established"`
	Verified    uint64                      `json:"verified"`
	Meminfo     procfs.Meminfo              `json:"meminfo"`
	Sockstat    procfs.Sockstat             `json:"sockstat"`
	Slabinfo    map[string]procfs.SlabCache `json:"slabinfo"`
	Vmstat      map[string]uint64           `json:"vmstat"`
	Probe       *bpf.Snapshot               `json:"probe,omitempty"`
}

// seriesInterval is the time series' interval.
const seriesInterval = 500 * time.Millisecond

// Recorder takes samples at phase ends and a time series between, and holds
// the probes' views of the peak (the end of the exchange, when everything
// the run holds is held). Its methods are the runner's callbacks.
type Recorder struct {
	probes *bpf.Probes // nil without probes

	mu       sync.Mutex
	last     runner.Progress
	samples  []PhaseSample
	peakSock []bpf.SocketMem
	stacks   []bpf.Stack
	cpu      []bpf.CPUStack
	cpuWhy   string
	sites    []bpf.KmallocSite
	errs     []string

	pids    []int
	ballast int // --ballast's pid; 0 without
	start   time.Time
	// The slab hooks: --kmem's mode, and the census if taken.
	kmemMode  Kmem
	census    *PhaseSample
	idleProbe *bpf.Snapshot
	series    []analysis.Sample
	stop      chan struct{}
	stopped   chan struct{}
}

// New returns a recorder reading probes, which may be nil.
func New(probes *bpf.Probes) *Recorder { return &Recorder{probes: probes} }

// AddPID is the runner's OnSpawn: the probes count the process as the
// run's, and the time series sums its RSS.
// SetBallast names the --ballast's process, whose resident and swapped
// bytes each sample reads.
func (r *Recorder) SetBallast(pid int) {
	r.mu.Lock()
	r.ballast = pid
	r.mu.Unlock()
}

func (r *Recorder) AddPID(pid int) error {
	r.mu.Lock()
	r.pids = append(r.pids, pid)
	r.mu.Unlock()
	if r.probes != nil {
		// The runner spawns its workers; the parent is this process.
		image := bpf.ImageWorker
		if pid == os.Getpid() {
			image = bpf.ImageParent
		}
		return r.probes.AddPID(pid, image)
	}
	return nil
}

// Progress is the runner's OnProgress: the counts the next sample shows.
func (r *Recorder) Progress(p runner.Progress) {
	r.mu.Lock()
	changed := p.Phase != r.last.Phase
	r.last = p
	r.mu.Unlock()
	if changed && r.probes != nil {
		if err := r.probes.SetPhase(phaseIndex(p.Phase)); err != nil {
			r.mu.Lock()
			r.errs = append(r.errs, err.Error())
			r.mu.Unlock()
		}
	}
}

// cpuPhases are the phases CPU samples are tagged with, by index. Index 0
// is between phases: the recorder's own reading of the peak, sock_diag's
// count of endpoints, which no phase of connections should be charged with.
var cpuPhases = []runner.Phase{phase.Between, runner.PhaseConnect, runner.PhaseExchange, runner.PhaseHold, runner.PhaseClose}

func phaseIndex(ph runner.Phase) uint32 {
	for i, p := range cpuPhases {
		if p == ph {
			return uint32(i)
		}
	}
	return 0
}

func phaseName(i uint32) phase.Phase {
	if int(i) < len(cpuPhases) {
		return cpuPhases[i]
	}
	return phase.Phase(fmt.Sprint(i))
}

// Phase is the runner's OnPhase: one sample of everything, and at the idle
// phase the start of the time series and of CPU sampling.
func (r *Recorder) Phase(ph runner.Phase) error {
	if ph == runner.PhaseIdle {
		// The baseline must not include frees still queued behind lazy RCU.
		procfs.SettleRCU()
	}
	if r.probes != nil {
		if err := r.probes.SetPhase(0); err != nil {
			return err
		}
	}
	s := PhaseSample{Phase: ph, Time: time.Now()}
	r.mu.Lock()
	s.Established, s.Verified = r.last.Established, r.last.Verified
	r.mu.Unlock()
	var err error
	if s.Meminfo, err = readMeminfo(ph); err != nil {
		return fmt.Errorf("sampling meminfo: %w", err)
	}
	if s.Sockstat, err = procfs.ReadSockstat(); err != nil {
		return fmt.Errorf("sampling sockstat: %w", err)
	}
	if s.Vmstat, err = procfs.ReadVmstat(); err != nil {
		return fmt.Errorf("sampling vmstat: %w", err)
	}
	// /proc/slabinfo is root-only; without it the ledger has no cross-check.
	s.Slabinfo, _ = procfs.ReadSlabinfo()
	if r.probes != nil {
		if s.Probe, err = r.probes.Snapshot(); err != nil {
			return err
		}
	}
	switch ph {
	case runner.PhaseIdle:
		r.idleProbe = s.Probe
		r.startSeries()
		if r.probes != nil {
			// CPU samples from the connect phase through the close, at 99 Hz:
			// off the 100 Hz of timers, so samples do not alias with them.
			if err := r.probes.StartCPU(99); err != nil {
				r.cpuWhy = err.Error()
			}
		}
	case runner.PhaseExchange:
		r.peak()
	case runner.PhaseClose:
		r.stopSeries()
		r.readCPU()
	}
	if ph != runner.PhaseIdle && ph != runner.PhaseClose && r.stop != nil {
		// Every phase's end is a row, however short the phase: the peak
		// must be in the series even when the exchange took under 0.5 s.
		r.sampleNow()
	}
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	return nil
}

// readMeminfo reads the idle and the peak, which the ledger subtracts,
// outside free page reporting's passes where this guest reports.
func readMeminfo(ph runner.Phase) (procfs.Meminfo, error) {
	if (ph == runner.PhaseIdle || ph == runner.PhaseExchange) && procfs.FreePageReporting(procfs.VirtioDevices) == procfs.PageReportingOn {
		return procfs.ReadMeminfoPastReporting(procfs.ReportingWindow)
	}
	return procfs.ReadMeminfo()
}

func (r *Recorder) startSeries() {
	r.start = time.Now()
	r.stop, r.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.stopped)
		t := time.NewTicker(seriesInterval)
		defer t.Stop()
		for {
			r.sampleNow()
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// stopSeries ends the time series with one last row; it is safe to call
// when the series never started or has stopped.
func (r *Recorder) stopSeries() {
	if r.stop != nil {
		close(r.stop)
		<-r.stopped
		r.stop = nil
		r.sampleNow()
	}
}

// sampleNow takes one row of the time series.
func (r *Recorder) sampleNow() {
	r.mu.Lock()
	p, pids, ballast := r.last, append([]int(nil), r.pids...), r.ballast
	r.mu.Unlock()
	s := analysis.Sample{Seconds: time.Since(r.start).Seconds(), Phase: p.Phase,
		Established: p.Established, Verified: p.Verified, Rate: p.Rate}
	if s.Phase == "" {
		s.Phase = phase.Idle
	}
	if m, err := procfs.ReadMeminfo(); err == nil {
		s.MemAvailable, s.Slab, s.SUnreclaim, s.SwapUsed = m.MemAvailable, m.Slab, m.SUnreclaim, m.SwapTotal-m.SwapFree
	}
	if st, err := procfs.ReadSockstat(); err == nil {
		s.TCPMemPages = st.TCPMemPages
	}
	if vm, err := procfs.ReadVmstat(); err == nil {
		s.PgscanDirect, s.PswpIn, s.PswpOut, s.OOMKills = vm["pgscan_direct"], vm["pswpin"], vm["pswpout"], vm["oom_kill"]
	}
	for _, pid := range pids {
		if rss, err := procfs.RSS(pid); err == nil {
			s.RunnerRSS += rss
		}
	}
	if ballast > 0 {
		s.BallastRSS, s.BallastSwap, _ = procfs.VmMemory(ballast)
	}
	if r.probes != nil && r.idleProbe != nil {
		if snap, err := r.probes.Snapshot(); err == nil {
			s.CacheBytes = map[string]int64{}
			for i, c := range snap.Caches {
				s.CacheBytes[c.Name] = (c.Live() - r.idleProbe.Caches[i].Live()) * int64(c.ObjectSize)
			}
		}
	}
	r.mu.Lock()
	r.series = append(r.series, s)
	r.mu.Unlock()
}

// peak reads what is only worth reading while every socket is held.
func (r *Recorder) peak() {
	if r.probes == nil {
		return
	}
	var err error
	if r.peakSock, err = r.probes.Sockets(); err != nil {
		r.errs = append(r.errs, err.Error())
	}
	if r.stacks, err = r.probes.AllocStacks(); err != nil {
		r.errs = append(r.errs, err.Error())
	}
	if r.sites, err = r.probes.KmallocSites(); err != nil {
		r.errs = append(r.errs, err.Error())
	}
}

// readCPU stops CPU sampling and reads what it took, each phase's apart.
func (r *Recorder) readCPU() {
	if r.probes == nil {
		return
	}
	r.probes.StopCPU()
	cpu, err := r.probes.CPUStacks()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cpu = cpu
	if err != nil {
		r.errs = append(r.errs, err.Error())
	}
}

// sample returns the sample taken at the end of phase ph, or nil.
func sample(samples []PhaseSample, ph runner.Phase) *PhaseSample {
	for i := range samples {
		if samples[i].Phase == ph {
			return &samples[i]
		}
	}
	return nil
}
