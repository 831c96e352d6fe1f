package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/runner"
)

// phaseSample is what the host and the probes showed when a phase ended.
// samples.json holds them; explain and export work from it.
type phaseSample struct {
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

// recorder takes samples at phase ends, and holds the probes' views of the
// peak (the end of the exchange, when everything the run holds is held).
type recorder struct {
	probes *bpf.Probes

	mu       sync.Mutex
	last     runner.Progress
	samples  []phaseSample
	peakSock []bpf.SocketMem
	peakDiag []uint64
	stacks   []bpf.Stack
	sites    []bpf.KmallocSite
	errs     []string
	listen   uint16
}

func (r *recorder) progress(p runner.Progress) {
	r.mu.Lock()
	r.last = p
	r.mu.Unlock()
}

func (r *recorder) phase(ph runner.Phase) error {
	if ph == runner.PhaseIdle {
		// The baseline must not include frees still queued behind lazy RCU.
		procfs.SettleRCU()
	}
	s := phaseSample{Phase: ph, Time: time.Now()}
	r.mu.Lock()
	s.Established, s.Verified = r.last.Established, r.last.Verified
	r.mu.Unlock()
	var err error
	if s.Meminfo, err = procfs.ReadMeminfo(); err != nil {
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
	if ph == runner.PhaseExchange {
		r.peak()
	}
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	return nil
}

// peak reads what is only worth reading while every socket is held.
func (r *recorder) peak() {
	var err error
	if r.probes != nil {
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
	if r.peakDiag, err = sockDiagBuffers(r.listen); err != nil {
		r.errs = append(r.errs, err.Error())
	}
}

func (r *recorder) sample(ph runner.Phase) *phaseSample {
	for i := range r.samples {
		if r.samples[i].Phase == ph {
			return &r.samples[i]
		}
	}
	return nil
}
