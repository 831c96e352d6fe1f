package analysis

import (
	"math"
	"math/bits"
	"slices"
)

// Distribution summarizes a set of per-socket byte counts.
type Distribution struct {
	Count uint64  `json:"sockets"`
	Mean  float64 `json:"mean"`
	P50   uint64  `json:"p50"`
	P90   uint64  `json:"p90"`
	P99   uint64  `json:"p99"`
	Max   uint64  `json:"max"`
	Total uint64  `json:"total"`
	// Log2 counts values by size: slot 0 holds zeros, slot k values in [2^(k-1), 2^k).
	Log2 []uint64 `json:"log2_histogram"`
}

// Distribute computes the distribution of values; it sorts values in place.
// Percentiles are nearest-rank.
func Distribute(values []uint64) Distribution {
	d := Distribution{Count: uint64(len(values))}
	if len(values) == 0 {
		return d
	}
	slices.Sort(values)
	for _, v := range values {
		d.Total += v
	}
	d.Mean = float64(d.Total) / float64(len(values))
	rank := func(p float64) uint64 {
		i := int(math.Ceil(p*float64(len(values)))) - 1
		return values[max(0, min(i, len(values)-1))]
	}
	d.P50, d.P90, d.P99, d.Max = rank(0.50), rank(0.90), rank(0.99), values[len(values)-1]
	d.Log2 = make([]uint64, bits.Len64(d.Max)+1)
	for _, v := range values {
		d.Log2[bits.Len64(v)]++
	}
	return d
}
