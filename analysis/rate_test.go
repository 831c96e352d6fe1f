package analysis

import (
	"math"
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
