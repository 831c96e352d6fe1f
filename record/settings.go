package record

import (
	"fmt"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner"
)

// Flag is one flag of run, serve and dial as the record sees it: where
// summary.json keeps its value, and, when it changes the result, how a
// comparison shows it. A flag that does not change the result says why.
type Flag struct {
	Name string // the flag, without --
	Key  string // its path in summary.json; "" where it is not recorded
	// Show says the flag as a comparison lists it beside the numbers: none
	// when the run did not set it; nil for a flag that does not change the
	// result.
	Show func(r *Run) []string
	Why  string // a flag without Show: why it does not change the result
}

// Flags are every flag of run, serve and dial: cmd's test holds its flag
// set to this table, so that no flag that changes the result goes
// unlisted by compare.
var Flags = []Flag{
	{Name: "conns", Key: "requested", Why: "the count is the result's own first column"},
	{Name: "no-bpf", Key: "kernel", Show: func(r *Run) []string { return when("--no-bpf", r.Summary.Kernel == nil) }},
	{Name: "no-tune", Key: "settings.no_tune", Show: set(func(st runner.Settings) (string, bool) { return "--no-tune", st.NoTune })},
	{Name: "mem-limit", Key: "settings.mem_limit", Show: set(func(st runner.Settings) (string, bool) {
		return "--mem-limit " + units.Bytes(st.MemLimit), st.MemLimit > 0
	})},
	{Name: "swap", Key: "settings.swap", Show: set(func(st runner.Settings) (string, bool) { return "--swap " + units.Bytes(st.Swap), st.Swap > 0 })},
	{Name: "rate", Key: "settings.rate", Show: set(func(st runner.Settings) (string, bool) { return fmt.Sprintf("--rate %g", st.Rate), st.Rate > 0 })},
	{Name: "src", Key: "settings.sources", Show: set(func(st runner.Settings) (string, bool) {
		return "--src " + strings.Join(st.Sources, ","), len(st.Sources) > 0
	})},
	{Name: "worker-fds", Key: "settings.worker_fds", Show: set(func(st runner.Settings) (string, bool) {
		return fmt.Sprintf("--worker-fds %d", st.WorkerFDs), st.WorkerFDs > 0
	})},
	{Name: "max-workers", Key: "settings.max_workers", Show: set(func(st runner.Settings) (string, bool) {
		return fmt.Sprintf("--max-workers %d", st.MaxWorkers), st.MaxWorkers > 0
	})},
	{Name: "port-range", Key: "sysctl_changes", Show: sysctlsSet},
	{Name: "sysctl", Key: "sysctl_changes", Show: sysctlsSet},
	{Name: "payload", Key: "payload", Show: func(r *Run) []string {
		p := r.Summary.Result.Payload
		s := fmt.Sprintf("payload %d B", p.Bytes)
		if p.Unread {
			s += " unread"
		}
		return when(s, p.Bytes > 0)
	}},
	{Name: "unread", Key: "payload.unread", Why: "shown with --payload, which it qualifies"},
	{Name: "family", Key: "settings.family", Show: set(func(st runner.Settings) (string, bool) {
		return "--family " + st.Family, st.Family != "" && st.Family != string(runner.FamilyInet)
	})},
	{Name: "port-choice", Key: "settings.port_choice", Show: set(func(st runner.Settings) (string, bool) {
		return "--port-choice " + st.PortChoice, st.PortChoice != "" && st.PortChoice != string(runner.DefaultPortChoice)
	})},
	{Name: "exchange", Key: "settings.exchange", Show: set(func(st runner.Settings) (string, bool) {
		return "--exchange " + st.Exchange, st.Exchange != "" && st.Exchange != string(runner.ExchangeNumbered)
	})},
	{Name: "netns", Key: "settings.netns", Show: set(func(st runner.Settings) (string, bool) { return "--netns", st.Netns })},
	{Name: "target", Key: "settings.target", Show: set(func(st runner.Settings) (string, bool) { return "--target " + st.Target, st.Target != "" })},
	{Name: "machine-mem", Key: "machine.mem_bytes", Show: func(r *Run) []string {
		if m := r.Summary.Result.Machine; m != nil {
			return []string{"--machine-mem " + units.Bytes(m.MemBytes)}
		}
		return nil
	}},
	{Name: "ballast", Key: "ballast.bytes", Show: func(r *Run) []string {
		if b := r.Summary.Result.Ballast; b != nil {
			return []string{"--ballast " + units.Bytes(b.Bytes)}
		}
		return nil
	}},
	{Name: "inflight", Key: "settings.inflight", Why: "connects in flight pace the connect phase; the rate section reports what they cost"},
	{Name: "hold", Key: "settings.hold_seconds", Why: "what is held is measured before the hold"},
	{Name: "reserve", Key: "settings.reserve_bytes", Why: "a guard: where it stops a run, the limit says so"},
	{Name: "timeout", Why: "a phase's patience: where it ends one, the limit says so"},
	{Name: "force", Why: "lets a run start that the preflight would refuse"},
	{Name: "out", Why: "where the run is recorded"},
	{Name: "probe-cost", Key: "kernel.probe_cost", Why: "times the probes; their cost is reported apart"},
	{Name: "backend", Key: "kernel.backend", Why: "how the probes attach, not what they count"},
	{Name: "kmem", Key: "kernel.kmem.mode", Why: "how the slab hooks count; the ledger is /proc/slabinfo's either way"},
	{Name: "server-pid", Why: "names the brought server's processes, measured alike"},
	{Name: "server-cmd", Key: "server.cmd", Why: "starts the brought server; --target names it"},
	{Name: "listen", Key: "server", Why: "where the built-in server listens"},
	{Name: "index", Key: "share.index", Why: "which dialer this is"},
	{Name: "of", Key: "share.of", Why: "how many dialers share --conns; the share is the result's count"},
	{Name: "wait", Why: "how long serve waits for its first dialer"},
}

// set shows a flag read from summary.json's settings.
func set(f func(runner.Settings) (string, bool)) func(*Run) []string {
	return func(r *Run) []string { return when(f(r.Summary.Result.Settings)) }
}

// when is s, if ok.
func when(s string, ok bool) []string {
	if ok {
		return []string{s}
	}
	return nil
}

// sysctlsSet shows the sysctls the run set (--port-range, --sysctl) by
// the values the kernel held.
func sysctlsSet(r *Run) []string {
	var kv []string
	for _, c := range r.Summary.Result.SysctlChanges {
		kv = append(kv, fmt.Sprintf("%s=%s", c.Key, c.New))
	}
	return kv
}

// settings lists what the run was asked to do that changes its result, in
// the flags' own terms: what a comparison must show beside its numbers.
func (r *Run) settings() []string {
	var out []string
	shown := map[string]bool{}
	for _, f := range Flags {
		if f.Show == nil {
			continue
		}
		for _, s := range f.Show(r) {
			if !shown[s] {
				shown[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
