package analysis

import (
	"encoding/csv"
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/phase"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// Sample is one row of a run's time series.
type Sample struct {
	Seconds      float64     `json:"t"`
	Phase        phase.Phase `json:"phase"`
	Established  uint64      `json:"established"`
	Verified     uint64      `json:"verified"`
	Rate         float64     `json:"connect_rate"`
	MemAvailable uint64      `json:"mem_available"`
	Slab         uint64      `json:"slab"`
	SUnreclaim   uint64      `json:"sunreclaim"`
	TCPMemPages  int64       `json:"tcp_mem_pages"` // socket buffer pages, as tcp_mem counts them
	SwapUsed     uint64      `json:"swap_used"`
	RunnerRSS    uint64      `json:"runner_rss"`
	PgscanDirect uint64      `json:"pgscan_direct"`
	PswpIn       uint64      `json:"pswpin"`
	PswpOut      uint64      `json:"pswpout"`
	OOMKills     uint64      `json:"oom_kill"`
	// The --ballast's resident and swapped bytes (VmRSS, VmSwap).
	BallastRSS  uint64           `json:"ballast_rss,omitempty"`
	BallastSwap uint64           `json:"ballast_swap,omitempty"`
	CacheBytes  map[string]int64 `json:"cache_bytes,omitempty"` // live bytes the probes counted since idle
}

// Stack is one sampled stack: a kernel allocation stack weighted in bytes,
// or a CPU stack (kernel frames, then user frames) weighted in samples.
type Stack struct {
	Frames []string    `json:"frames"`          // innermost first
	What   string      `json:"what,omitempty"`  // the slab cache, or "pages order N"; empty for CPU
	Weight uint64      `json:"weight"`          // bytes, or samples for CPU stacks
	Phase  phase.Phase `json:"phase,omitempty"` // CPU stacks: the run's phase when sampled
}

// TimeseriesHeader is the fixed part of timeseries.csv's header; one
// cache_<name>_bytes column per probed cache follows.
var TimeseriesHeader = []string{"time_s", "phase", "established", "verified", "connect_rate", "mem_available",
	"slab", "sunreclaim", "tcp_mem_pages", "socket_buffer_bytes", "swap_used", "runner_rss",
	"pgscan_direct", "pswpin", "pswpout", "oom_kill"}

// WriteTimeseriesCSV writes one row per sample.
func WriteTimeseriesCSV(w io.Writer, samples []Sample, pageSize uint64) error {
	caches := map[string]bool{}
	for _, s := range samples {
		for c := range s.CacheBytes {
			caches[c] = true
		}
	}
	names := make([]string, 0, len(caches))
	for c := range caches {
		names = append(names, c)
	}
	sort.Strings(names)
	cw := csv.NewWriter(w)
	header := append([]string(nil), TimeseriesHeader...)
	for _, c := range names {
		header = append(header, "cache_"+c+"_bytes")
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, s := range samples {
		row := []string{strconv.FormatFloat(s.Seconds, 'f', 3, 64), string(s.Phase), u(s.Established), u(s.Verified),
			strconv.FormatFloat(s.Rate, 'f', 0, 64), u(s.MemAvailable), u(s.Slab), u(s.SUnreclaim),
			strconv.FormatInt(s.TCPMemPages, 10), u(uint64(max(0, s.TCPMemPages)) * pageSize), u(s.SwapUsed), u(s.RunnerRSS),
			u(s.PgscanDirect), u(s.PswpIn), u(s.PswpOut), u(s.OOMKills)}
		for _, c := range names {
			row = append(row, strconv.FormatInt(s.CacheBytes[c], 10))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteLedgerCSV writes the explanation's ledger.
func WriteLedgerCSV(w io.Writer, e Explanation) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"kind", "name", "bytes_per_connection", "bytes_per_client_socket", "bytes_per_server_socket", "bytes_total", "share", "source"})
	for _, l := range e.Ledger {
		share := 0.0
		if e.GrowthBytes != 0 {
			share = float64(l.BytesTotal) / float64(e.GrowthBytes)
		}
		cw.Write([]string{l.Kind, l.Name, strconv.FormatFloat(l.BytesPerConnection, 'f', 1, 64),
			strconv.FormatFloat(l.BytesPerClientSocket, 'f', 1, 64), strconv.FormatFloat(l.BytesPerServerSocket, 'f', 1, 64),
			strconv.FormatInt(l.BytesTotal, 10), strconv.FormatFloat(share, 'f', 4, 64), l.Source})
	}
	cw.Flush()
	return cw.Error()
}

// folded is a stack root first, as flamegraph.pl, inferno and speedscope read it.
func folded(s Stack) string {
	parts := make([]string, 0, len(s.Frames)+2)
	if s.Phase != "" {
		// A CPU flamegraph splits by phase at its root.
		parts = append(parts, "["+string(s.Phase)+"]")
	}
	for i := len(s.Frames) - 1; i >= 0; i-- {
		parts = append(parts, strings.ReplaceAll(s.Frames[i], ";", ":"))
	}
	if s.What != "" {
		parts = append(parts, "["+s.What+"]")
	}
	return strings.Join(parts, ";")
}

// WriteFolded writes "frame;frame;...;[cache] bytes" lines, merged and sorted.
func WriteFolded(w io.Writer, stacks []Stack) error {
	sum := map[string]uint64{}
	for _, s := range stacks {
		sum[folded(s)] += s.Weight
	}
	keys := make([]string, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := fmt.Fprintf(w, "%s %d\n", k, sum[k]); err != nil {
			return err
		}
	}
	return nil
}

// AllocSpace and CPUSamples are the two kinds of profile a run writes.
var (
	AllocSpace = profile.ValueType{Type: "alloc_space", Unit: "bytes"}
	CPUSamples = profile.ValueType{Type: "samples", Unit: "count"}
)

// Profile builds a pprof profile of the stacks: one sample per stack, its
// value the stack's weight, the cache (if any) as the leaf frame and a label.
func Profile(stacks []Stack, kind profile.ValueType) *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{&kind},
		PeriodType: &profile.ValueType{Type: kind.Type, Unit: kind.Unit},
	}
	funcs := map[string]*profile.Function{}
	locs := map[string]*profile.Location{}
	loc := func(name string) *profile.Location {
		if l, ok := locs[name]; ok {
			return l
		}
		f := &profile.Function{ID: uint64(len(funcs) + 1), Name: name, SystemName: name}
		funcs[name] = f
		p.Function = append(p.Function, f)
		l := &profile.Location{ID: uint64(len(locs) + 1), Line: []profile.Line{{Function: f}}}
		locs[name] = l
		p.Location = append(p.Location, l)
		return l
	}
	for _, s := range stacks {
		sample := &profile.Sample{Value: []int64{int64(s.Weight)}}
		if s.What != "" {
			sample.Label = map[string][]string{"cache": {s.What}}
			sample.Location = append(sample.Location, loc("["+s.What+"]"))
		}
		if s.Phase != "" {
			// go tool pprof -tagfocus phase=connect
			sample.Label = map[string][]string{"phase": {string(s.Phase)}}
		}
		for _, f := range s.Frames {
			sample.Location = append(sample.Location, loc(f))
		}
		p.Sample = append(p.Sample, sample)
	}
	return p
}

// WritePprof writes the gzipped pprof profile of the stacks.
func WritePprof(w io.Writer, stacks []Stack, kind profile.ValueType) error {
	p := Profile(stacks, kind)
	if err := p.CheckValid(); err != nil {
		return fmt.Errorf("building the pprof profile: %w", err)
	}
	return p.Write(w) // Write gzips
}
