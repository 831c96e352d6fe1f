package record

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/phase"
	"math"
	"sort"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// KmemReport is summary.json's kernel.kmem: how the slab hooks ran, and,
// after a census, its bytes per connection by cache against
// /proc/slabinfo's at the peak.
type KmemReport struct {
	Mode              Kmem    `json:"mode"`
	CensusConnections uint64  `json:"census_connections,omitempty"`
	CensusSeconds     float64 `json:"census_seconds,omitempty"` // from the connect phase's start
	// Check is, by cache, the census's bytes a connection against the
	// peak's /proc/slabinfo delta over every connection.
	Check map[string]KmemCheck `json:"check,omitempty"`
	// Flagged are the caches whose two figures differ by more than
	// kmemTolerance, largest first.
	Flagged []string `json:"flagged,omitempty"`
}

type KmemCheck struct {
	CensusBytesPerConnection   float64 `json:"census_bytes_per_connection"`
	SlabinfoBytesPerConnection float64 `json:"slabinfo_bytes_per_connection"`
	// Difference is slabinfo over census, less one.
	Difference float64 `json:"difference"`
}

// kmemTolerance is how far the census may be off /proc/slabinfo at the
// peak before the summary and the verdict say so.
const kmemTolerance = 0.05

// minFlagBytes: a cache of fewer bytes a connection than this is checked
// but not flagged: its per-CPU slabs alone move it by more than 5 %.
const minFlagBytes = 64

// Kmem is how a run uses the slab hooks (--kmem).
type Kmem string

const (
	// KmemCensus counts every allocation exactly for the first
	// connections (Runner.CensusSize), then detaches the hooks.
	KmemCensus Kmem = "census"
	KmemFull   Kmem = "full" // the whole run
	KmemOff    Kmem = "off"  // no slab hooks
)

// ParseKmem is --kmem's value, or an error naming the three.
func ParseKmem(s string) (Kmem, error) {
	switch k := Kmem(s); k {
	case KmemCensus, KmemFull, KmemOff:
		return k, nil
	}
	return "", fmt.Errorf("--kmem takes census, full or off, got %q", s)
}

// SetKmem records how the run uses the slab hooks (--kmem).
func (r *Recorder) SetKmem(mode Kmem) { r.kmemMode = mode }

// Census is the runner's OnCensus: /proc/slabinfo and the probes read
// back to back while nothing opens, then the slab hooks detached.
func (r *Recorder) Census(connections uint64) error {
	if r.probes == nil {
		return nil
	}
	s := PhaseSample{Phase: phase.Census, Time: time.Now(), Established: connections}
	s.Slabinfo, _ = procfs.ReadSlabinfo()
	var err error
	if s.Probe, err = r.probes.Snapshot(); err != nil {
		return err
	}
	r.mu.Lock()
	r.census = &s
	r.mu.Unlock()
	return r.probes.DetachKmem()
}

// kmemReport is kernel.kmem; the caches' probe counts end at the census
// when there was one.
func (r *Recorder) kmemReport(idle, peak *PhaseSample, established uint64, caches map[string]CacheReport) *KmemReport {
	k := &KmemReport{Mode: r.kmemMode}
	if k.Mode == "" {
		k.Mode = KmemFull
	}
	c := r.census
	if c == nil || idle == nil || peak == nil || established == 0 || c.Established == 0 {
		return k
	}
	// The idle sample is taken as the connect phase begins.
	k.CensusConnections, k.CensusSeconds = c.Established, c.Time.Sub(idle.Time).Seconds()
	if idle.Slabinfo == nil || peak.Slabinfo == nil || c.Slabinfo == nil {
		return k // /proc/slabinfo is root's: nothing to check against
	}
	k.Check = map[string]KmemCheck{}
	for name, cr := range caches {
		ck := KmemCheck{
			CensusBytesPerConnection:   float64(cr.Bytes) / float64(c.Established),
			SlabinfoBytesPerConnection: float64(cr.SlabinfoDelta) * float64(cr.ObjectSize) / float64(established),
		}
		if ck.CensusBytesPerConnection > 0 {
			ck.Difference = ck.SlabinfoBytesPerConnection/ck.CensusBytesPerConnection - 1
		}
		k.Check[name] = ck
		// Flagged where the census is the account: the probes saw at the
		// census what slabinfo did then (caches they cannot see, whose
		// objects come with no allocation event, are said so elsewhere).
		atCensus := float64(int64(c.Slabinfo[name].ActiveObjs)-int64(idle.Slabinfo[name].ActiveObjs)) * float64(cr.ObjectSize)
		seen := atCensus > 0 && float64(cr.Bytes) >= 0.9*atCensus
		if seen && ck.CensusBytesPerConnection >= minFlagBytes && math.Abs(ck.Difference) > kmemTolerance {
			k.Flagged = append(k.Flagged, name)
		}
	}
	sort.Slice(k.Flagged, func(i, j int) bool {
		return k.Check[k.Flagged[i]].CensusBytesPerConnection > k.Check[k.Flagged[j]].CensusBytesPerConnection
	})
	return k
}

// flagText says what the census check flagged, for the verdict.
func (k *KmemReport) flagText() []string {
	var out []string
	for _, name := range k.Flagged {
		ck := k.Check[name]
		out = append(out, fmt.Sprintf("%s %.0f against %.0f B a connection (%+.1f %%)",
			name, ck.CensusBytesPerConnection, ck.SlabinfoBytesPerConnection, 100*ck.Difference))
	}
	return out
}
