package record

import (
	"strings"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// The census check: each cache's census bytes a connection against the
// peak's slabinfo delta over every connection. A cache the probes saw
// whole at the census and that then grew faster than the connections is
// flagged; one slabinfo already showed ahead of the probes at the census
// (objects with no allocation event) is checked but not flagged; a small
// one is not flagged either.
func TestKmemCheckFlagsWhatTheCensusGotWrong(t *testing.T) {
	slab := func(objs map[string]uint64) map[string]procfs.SlabCache {
		out := map[string]procfs.SlabCache{}
		for name, n := range objs {
			out[name] = procfs.SlabCache{ActiveObjs: n}
		}
		return out
	}
	t0 := time.Now()
	idle := &PhaseSample{Phase: "idle", Time: t0, Slabinfo: slab(map[string]uint64{"TCP": 0, "eventpoll_epi": 0, "dentry": 0, "kmalloc-32": 0})}
	r := &Recorder{kmemMode: "census", samples: []PhaseSample{*idle}}
	// 1,000 connections at the census: TCP 2 a connection, eventpoll_epi 2,
	// dentry: slabinfo 4 a connection where the probes saw 2, kmalloc-32 1.
	r.census = &PhaseSample{Phase: "census", Time: t0.Add(2 * time.Second), Established: 1000,
		Slabinfo: slab(map[string]uint64{"TCP": 2000, "eventpoll_epi": 2000, "dentry": 4000, "kmalloc-32": 1000})}
	// At 10,000: TCP as counted, eventpoll_epi 20 % more, dentry 4 a
	// connection, kmalloc-32 doubled (peak less idle, as kernel() has it).
	peak := &PhaseSample{Slabinfo: slab(map[string]uint64{"TCP": 20000, "eventpoll_epi": 24000, "dentry": 40000, "kmalloc-32": 20000})}
	caches := map[string]CacheReport{
		"TCP":           {ObjectSize: 2368, Bytes: 2000 * 2368, SlabinfoDelta: 20000},
		"eventpoll_epi": {ObjectSize: 128, Bytes: 2000 * 128, SlabinfoDelta: 24000},
		"dentry":        {ObjectSize: 192, Bytes: 2000 * 192, SlabinfoDelta: 40000},
		"kmalloc-32":    {ObjectSize: 32, Bytes: 1000 * 32, SlabinfoDelta: 20000},
	}
	k := r.kmemReport(idle, peak, 10000, caches)
	if k.CensusConnections != 1000 || k.CensusSeconds != 2 {
		t.Errorf("census %d connections at %.1f s", k.CensusConnections, k.CensusSeconds)
	}
	if d := k.Check["TCP"].Difference; d < -1e-9 || d > 1e-9 {
		t.Errorf("TCP difference %.3f, want 0", d)
	}
	if d := k.Check["eventpoll_epi"].Difference; d < 0.199 || d > 0.201 {
		t.Errorf("eventpoll_epi difference %.3f, want +0.2", d)
	}
	if len(k.Flagged) != 1 || k.Flagged[0] != "eventpoll_epi" {
		t.Errorf("flagged %v, want eventpoll_epi alone (dentry: slabinfo ahead at the census; kmalloc-32: 32 B a connection)", k.Flagged)
	}
	if text := k.flagText(); len(text) != 1 || !strings.Contains(text[0], "eventpoll_epi 256 against 307 B a connection (+20.0 %)") {
		t.Errorf("flag text %q", text)
	}
}
