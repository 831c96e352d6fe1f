package analysis

import (
	"math"
	"strings"
	"testing"
)

// A run that connects at 1,000/s for its first half and 250/s for its second
// reads so by tenth; the established hash's chains are both ends of every
// connection over its buckets.
func TestRateByDecileAndHashChains(t *testing.T) {
	r := Run{Connections: 10000, EhashEntries: 4096}
	for s := 0.0; s <= 25; s += 0.5 {
		est := uint64(min(5000, 1000*s))
		if s > 5 {
			est = uint64(min(10000, 5000+250*(s-5)))
		}
		r.Series = append(r.Series, Sample{Seconds: s, Phase: "connect", Established: est})
	}
	rt := rateOf(r)
	if rt == nil || len(rt.ConnectByDecile) != 10 {
		t.Fatalf("rate %+v", rt)
	}
	for i, want := range []float64{1000, 1000, 1000, 1000, 1000, 250, 250, 250, 250, 250} {
		if math.Abs(rt.ConnectByDecile[i]-want) > want/50 {
			t.Errorf("tenth %d: %.0f/s, want %.0f", i+1, rt.ConnectByDecile[i], want)
		}
	}
	if rt.EhashChainMean != 20000.0/4096 {
		t.Errorf("chain mean %.2f", rt.EhashChainMean)
	}
	if rateOf(Run{Connections: 10000}) != nil {
		t.Error("a run without a time series has a rate section")
	}
}

// CPU shares are per phase and inclusive: a function counts once a stack
// however often it recurs, and each phase's shares are of its own samples.
func TestCPUSharesByPhase(t *testing.T) {
	r := Run{Connections: 1000, Series: []Sample{{Seconds: 0}, {Seconds: 1, Established: 1000}}, CPU: []Stack{
		{Phase: "connect", Weight: 60, Frames: []string{"__inet_check_established", "__inet_hash_connect", "__inet_hash_connect", "tcp_v4_connect"}},
		{Phase: "connect", Weight: 40, Frames: []string{"allocate_slab", "kmem_cache_alloc"}},
		{Phase: "exchange", Weight: 30, Frames: []string{"__inet_lookup_established", "tcp_v4_rcv"}},
		{Phase: "exchange", Weight: 10, Frames: []string{"tcp_sendmsg_locked"}},
	}, PageReporting: true, PageReportedKiB: 3 << 20}
	rt := rateOf(r)
	for _, c := range []struct {
		fn, ph string
		want   float64
	}{{"__inet_hash_connect", "connect", 0.6}, {"allocate_slab", "connect", 0.4}, {"__inet_lookup_established", "exchange", 0.75}, {"tcp_sendmsg_locked", "exchange", 0.25}, {"__inet_hash_connect", "exchange", 0}} {
		if got := rt.share(c.fn, c.ph); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s in %s: %.2f, want %.2f", c.fn, c.ph, got, c.want)
		}
	}
	if rt.PhaseSamples["connect"] != 100 || rt.PhaseSamples["exchange"] != 40 {
		t.Errorf("samples by phase %v", rt.PhaseSamples)
	}
	if top := rt.TopSelf["connect"]; len(top) != 2 || top[0].Func != "__inet_check_established" || top[0].Share != 0.6 {
		t.Errorf("connect's top self functions %+v", top)
	}
	var kinds []string
	for _, c := range rt.Causes {
		kinds = append(kinds, c.Kind)
	}
	// The scan and the slab pages are over a tenth of the connect phase;
	// the hash lookups are not (their exchange share does not count).
	if len(kinds) != 2 || kinds[0] != "port_scan" || kinds[1] != "slab_pages" {
		t.Fatalf("causes %v, want port_scan and slab_pages", kinds)
	}
	// A guest that gives freed pages back to its host: the slab pages'
	// cause says so, with how much.
	if d := rt.Causes[1].Detail; !strings.Contains(d, "free page reporting: 3.0 GiB since boot") {
		t.Errorf("slab_pages cause: %s", d)
	}
}

// The recorded run that filled one source address to 96 %: its connects
// fell from 15k/s to about 1.3k/s at half, and the explanation names the
// port search, from the connect phase's CPU samples.
func TestRecordedPortScanIsNamed(t *testing.T) {
	rt := Explain(loadInput(t, "portscan")).Rate
	if rt == nil || len(rt.ConnectByDecile) != 10 || rt.ConnectByDecile[0] < 5*rt.ConnectByDecile[9] {
		t.Fatalf("rate %+v: want the last tenth 5 times slower than the first", rt)
	}
	if len(rt.Causes) == 0 || rt.Causes[0].Kind != "port_scan" || rt.Causes[0].Share < 0.5 {
		t.Fatalf("causes %+v, want the port scan first, over half the connect phase", rt.Causes)
	}
}

// What the census check flags is in the verdict, with the census's size,
// and a run in its own network namespace says whose hash it had.
func TestVerdictSaysTheCensusFlagsAndTheNamespace(t *testing.T) {
	r := loadInput(t, "memory")
	r.CensusConnections, r.KmemFlags = 20000, []string{"eventpoll_epi 256 against 307 B a connection (+20.0 %)"}
	r.Netns, r.EhashEntries = true, 65536
	v := Explain(r).Verdict
	for _, want := range []string{"census of the first 20,000 connections disagrees with /proc/slabinfo", "eventpoll_epi 256 against 307", "private network namespace (--netns), with its own established hash of 65,536 buckets"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict lacks %q: %s", want, v)
		}
	}
}

// A smaller machine's holds are a cause of the connect phase's time, with
// their share of it; a run without holds names none.
func TestReclaimHoldsAreNamed(t *testing.T) {
	r := Run{Connections: 10000, Machine: &MachineRun{OpeningHolds: 4, OpeningHeldSeconds: 5}}
	for s := 0.0; s <= 20; s += 0.5 {
		r.Series = append(r.Series, Sample{Seconds: s, Phase: "connect", Established: uint64(500 * s)})
	}
	r.Series = append(r.Series, Sample{Seconds: 21, Phase: "exchange", Established: 10000})
	rt := rateOf(r)
	if rt == nil || len(rt.Causes) != 1 || rt.Causes[0].Kind != "reclaim_holds" || math.Abs(rt.Causes[0].Share-0.25) > 1e-9 ||
		!strings.Contains(rt.Causes[0].Detail, "held 4 times, 5.0 s in all (25 % of the connect phase)") {
		t.Fatalf("causes %+v, want reclaim_holds at 25 %%", rt)
	}
	r.Machine.OpeningHolds, r.Machine.OpeningHeldSeconds = 0, 0
	if rt := rateOf(r); len(rt.Causes) != 0 {
		t.Errorf("no holds, causes %+v", rt.Causes)
	}
}
