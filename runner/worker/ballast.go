package worker

// The ballast's body (--ballast SIZE): a process of the run's own that maps
// SIZE of anonymous memory, touches all of it, then touches pages at random
// at a steady rate, timing each touch, and prints what it saw once a second.

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Ballast is the ballast process's role.
const Ballast Role = "ballast"

// LatencyStats are percentiles of the ballast's touch times.
type LatencyStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// BallastReport is what the ballast process prints once a second.
type BallastReport struct {
	Filled  bool         `json:"filled"`
	Touches uint64       `json:"touches"`
	Latency LatencyStats `json:"latency_us"`
}

// ballastMain is the ballast process.
func ballastMain(cfg Config) int {
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	mem, err := unix.Mmap(-1, 0, int(cfg.Bytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe ballast: mmap %d bytes: %v\n", cfg.Bytes, err)
		return 1
	}
	page := os.Getpagesize()
	pages := len(mem) / page
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	out := json.NewEncoder(os.Stdout)
	var h latencyHistogram
	report := func(filled bool) {
		_ = out.Encode(BallastReport{Filled: filled, Touches: h.n, Latency: h.stats()})
	}
	report(true)
	tick := time.NewTicker(time.Second / time.Duration(max(1, cfg.TouchRate)))
	defer tick.Stop()
	last := time.Now()
	for range tick.C {
		p := rand.IntN(pages) * page
		start := time.Now()
		mem[p]++ // a write: a swapped page comes back, and must go out again
		h.add(time.Since(start))
		if time.Since(last) >= time.Second {
			report(true)
			last = time.Now()
		}
	}
	return 0
}

// latencyHistogram counts durations in buckets of 1/8 of a power of two
// (≤ 9 % wide), enough for p50 and p99 from a million touches.
type latencyHistogram struct {
	buckets [64 * 8]uint64
	n       uint64
	max     time.Duration
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(1, d))
	e := bits.Len64(ns) - 1
	frac := 0
	if e >= 3 {
		frac = int(ns>>(e-3)) & 7
	}
	return e*8 + frac
}

func (h *latencyHistogram) add(d time.Duration) {
	h.buckets[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latencyHistogram) quantile(q float64) time.Duration {
	want := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if c > 0 && seen >= want {
			e, frac := i/8, i%8
			// The bucket's upper edge.
			lo := uint64(1) << e
			if e >= 3 {
				lo |= uint64(frac) << (e - 3)
				return time.Duration(lo + (uint64(1) << (e - 3)))
			}
			return time.Duration(lo * 2)
		}
	}
	return 0
}

func (h *latencyHistogram) stats() LatencyStats {
	if h.n == 0 {
		return LatencyStats{}
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return LatencyStats{P50: us(h.quantile(0.5)), P99: us(h.quantile(0.99)), Max: us(h.max)}
}
