package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

const runExamples = `  sudo c10mprobe run --conns 100000
  sudo c10mprobe run --conns 1000000 --hold 30s          # then look with ss -s, slabtop
  sudo c10mprobe run --conns 50000 --src 127.0.0.2 --port-range 40000-40999   # ports bind first
  sudo c10mprobe run --conns 5000 --worker-fds 100 --max-workers 2            # fds bind first
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/a       # buffers held...
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/b --sysctl net.ipv4.tcp_rmem="4096 4096 4096"
  c10mprobe compare runs/a runs/b                                               # ...and what tcp_rmem changed
`

// summary is summary.json: the runner's result plus the sections the probes
// and the analysis add.
type summary struct {
	*runner.Result
	Preflight   []runner.Check        `json:"preflight"`
	Host        runner.Host           `json:"host"`
	Kernel      *kernelSection        `json:"kernel"`
	Explanation *analysis.Explanation `json:"explanation"`
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var (
		conns      countValue
		listen     = addrPortValue(netip.MustParseAddrPort("127.0.0.1:9999"))
		srcs       sourcesValue
		portRange  portRangeValue
		sysctls    sysctlsValue
		reserve    sizeValue
		payload    sizeValue
		memLimit   sizeValue
		swap       sizeValue
		inflight   = fs.Int("inflight", 512, "most connects pending at once, over all workers")
		rate       = fs.Float64("rate", 0, "most new connections per second; 0 for no limit")
		hold       = fs.Duration("hold", 0, "keep every connection open this long after the exchange")
		timeout    = fs.Duration("timeout", 15*time.Second, "end a phase that makes no progress for this long")
		workerFDs  = fs.Uint64("worker-fds", 0, "RLIMIT_NOFILE of each worker (0: the hard limit)")
		maxWorkers = fs.Int("max-workers", 0, "most worker processes per side (0: as many as the fd budget needs)")
		noTune     = fs.Bool("no-tune", false, "change no sysctl (expect SYN drops at high counts)")
		out        = fs.String("out", "", "run directory, new or empty (default runs/<UTC timestamp>)")
		noBPF      = fs.Bool("no-bpf", false, "do not attach the eBPF probes")
		probeCost  = fs.Bool("probe-cost", false, "have the kernel time the probes' programs (BPF_ENABLE_STATS) and report their CPU per connection")
		unread     = fs.Bool("unread", false, "leave the peer's payload queued (with --payload)")
		backendArg = fs.String("backend", "auto", "probe backend: auto, fentry, kprobe, raw_tracepoint or tracepoint")
	)
	fs.Var(&conns, "conns", "connections to open and verify (required)")
	fs.Var(&listen, "listen", "the one server address:port every connection lands on")
	fs.Var(&srcs, "src", "client source addresses or CIDRs (default: as many of 127.0.0.0/8 as needed)")
	fs.Var(&portRange, "port-range", "set net.ipv4.ip_local_port_range to LO-HI for the run")
	fs.Var(&sysctls, "sysctl", "set KEY=VALUE for the run, restored after (repeatable)")
	fs.Var(&memLimit, "mem-limit", "run the workers in a memory cgroup capped at this, e.g. 1GiB: a smaller machine")
	fs.Var(&swap, "swap", "a swapfile of this size for the run, removed after, e.g. 2GiB")
	fs.Var(&payload, "payload", "bytes each side sends after the numbered message, e.g. 16KiB")
	fs.Var(&reserve, "reserve", "stop opening when MemAvailable falls below this (default max(1GiB, 5% of RAM))")
	if code, ok := parseFlags(fs, args, stdout, stderr, runExamples); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "c10mprobe run: unexpected argument %q\n", fs.Arg(0))
		return exitBadInput
	}
	if conns == 0 {
		fmt.Fprintln(stderr, "c10mprobe run: --conns is required, e.g. --conns 100000")
		return exitBadInput
	}
	backend, err := bpf.ParseBackend(*backendArg)
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe run: --backend: %v\n", err)
		return exitBadInput
	}
	if *probeCost && *noBPF {
		fmt.Fprintln(stderr, "c10mprobe run: --probe-cost times the probes, and --no-bpf attaches none: pass one of them")
		return exitBadInput
	}
	unlock, err := runner.LockHost()
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe run: %v; runs change host-wide sysctls and must not overlap\n", err)
		return exitNotAll
	}
	defer unlock()
	if !*noBPF && os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "c10mprobe run: the eBPF probes need root: rerun with sudo, or pass --no-bpf")
		return exitBadInput
	}
	if reserve == 0 {
		m, err := procfs.ReadMeminfo()
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe run: reading meminfo: %v\n", err)
			return exitNotAll
		}
		reserve = sizeValue(max(1<<30, m.MemTotal/20))
	}
	if *out == "" {
		*out = filepath.Join("runs", time.Now().UTC().Format("20060102T150405Z"))
	}

	prog := newProgress(stderr)
	rec := &recorder{}
	cfg := runner.Config{
		Conns: int(conns), Listen: netip.AddrPort(listen), Sources: srcs, Inflight: *inflight, Rate: *rate,
		Hold: *hold, Timeout: *timeout, Reserve: uint64(reserve), WorkerFDs: *workerFDs, MaxWorkers: *maxWorkers,
		PortRange: portRange, Sysctls: sysctls, NoTune: *noTune, OutDir: *out, Payload: int(payload), Unread: *unread, MemLimit: uint64(memLimit), Swap: uint64(swap),
		Log: stderr, OnPhase: rec.phase, OnSpawn: rec.addPID,
		OnProgress: func(p runner.Progress) { rec.progress(p); prog.update(p) },
	}
	if memLimit > 0 {
		if h, err := runner.ReadHost(); err == nil {
			cfg.MemPerConn, _ = analysis.MemcgCharge(h.SlabObjSize)
		}
	}
	r, err := runner.Prepare(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe run: %v\n", err)
		if runner.IsBadInput(err) {
			return exitBadInput
		}
		return exitNotAll
	}
	if !*noBPF {
		plan := r.Plan()
		probes, err := bpf.Open(bpf.Config{
			Backend: backend, Conns: int(conns), Inflight: *inflight, RunPort: netip.AddrPort(listen).Port(),
			Sources: plan.Sources, PortLo: plan.PortLo, PortsPerSource: plan.PortsPerSource,
		})
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe run: attaching the eBPF probes: %v; pass --no-bpf to run without them\n", err)
			if backend != "" {
				return exitBadInput
			}
			return exitNotAll
		}
		defer probes.Close()
		rec.probes = probes
		if *probeCost {
			if err := probes.TimePrograms(); err != nil {
				fmt.Fprintf(stderr, "c10mprobe run: --probe-cost: %v\n", err)
				return exitNotAll
			}
		}
		if probes.MountedTracefs() {
			// So that `restore` unmounts it after a SIGKILL, too.
			if err := markTracefs(*out); err != nil {
				fmt.Fprintf(stderr, "c10mprobe run: %v\n", err)
				return exitNotAll
			}
		}

		fmt.Fprintf(stderr, "probes: %s backend\n", probes.Backend())
	}
	printPreflight(stderr, r.Preflight())
	// The cap's prediction is printed before the first connection: the
	// model's cost per connection, into what the workers leave of the cap.
	var predicted uint64
	if memLimit > 0 {
		perConn, why := analysis.MemcgCharge(r.Host().SlabObjSize)
		if perConn == 0 {
			fmt.Fprintln(stderr, "c10mprobe run: --mem-limit needs /proc/slabinfo (root) to predict the cap")
			return exitBadInput
		}
		onPhase := cfg.OnPhase
		r.SetOnPhase(func(ph runner.Phase) error {
			if ph == runner.PhaseIdle {
				base := r.MemcgUsage()
				room := runner.MemcapStop*float64(memLimit) - float64(base)
				predicted = analysis.PredictMemcg(room, perConn)
				fmt.Fprintf(stderr, "memory cap %s: the workers hold %s of it; predicted ≈ %d connections at %.0f B charged each (%s) up to %.0f %% of the cap\n",
					units.Bytes(uint64(memLimit)), units.Bytes(base), predicted, perConn, why, 100*runner.MemcapStop)
			}
			return onPhase(ph)
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		s := <-sigs
		prog.note(fmt.Sprintf("%v: stopping, verifying what is held, restoring (again to abort)", s))
		cancel()
		<-sigs
		prog.note("second signal: killing workers, restoring")
		r.Abort()
	}()

	res, err := r.Run(ctx)
	prog.done()
	if res == nil {
		fmt.Fprintf(stderr, "c10mprobe run: %v\n", err)
		return exitNotAll
	}
	if res.Memcap != nil {
		res.Memcap.PredictedConnections = predicted
	}
	// Kernel symbols, read once for every stack and call site of the run.
	var syms *ksym.Table
	var symErr error
	if rec.probes != nil {
		syms, symErr = ksym.Load("/proc/kallsyms")
	}
	sum := summary{Result: res, Preflight: r.Preflight(), Host: r.Host(), Kernel: rec.kernelSection(res, syms)}
	var stacks, cpuStacks []analysis.Stack
	if syms != nil {
		user, uerr := ksym.FromGoBinary(res.WorkerExecutable)
		if uerr != nil {
			fmt.Fprintf(stderr, "CPU stacks' user frames left in hex: %v\n", uerr)
		}
		stacks, cpuStacks = symbolize(syms, rec.stacks), symbolizeCPU(syms, user, rec.cpu)
	} else if symErr != nil {
		fmt.Fprintf(stderr, "no allocation or CPU stacks: %v\n", symErr)
		if rec.cpuWhy == "" {
			rec.cpuWhy = symErr.Error()
		}
	}
	d := &runData{sum: sum, series: rec.series, stacks: stacks, cpu: cpuStacks, cpuWhy: rec.cpuWhy}
	in, aerr := analysisInput(sum, rec.samples)
	if aerr == nil {
		d.in, d.e = in, analysis.Explain(in)
		sum.Explanation = &d.e
		d.sum.Explanation = &d.e
	} else {
		fmt.Fprintf(stderr, "no explanation: %v\n", aerr)
	}
	for _, w := range []struct {
		name string
		v    any
	}{{"summary.json", sum}, {"samples.json", rec.samples}, {timeseriesFile, rec.series}, {stacksFile, stacks}, {cpuStacksFile, cpuStacks}} {
		if werr := writeJSON(filepath.Join(*out, w.name), w.v); werr != nil && err == nil {
			err = werr
		}
	}
	if aerr == nil {
		if _, _, xerr := writeExports(*out, d, allFormats); xerr != nil && err == nil {
			err = xerr
		}
	}
	if m := res.Memcap; m != nil {
		off := 100 * (float64(m.ActualConnections) - float64(predicted)) / float64(max(1, predicted))
		fmt.Fprintf(stdout, "memory cap %s: predicted %d connections, held %d (%+.1f %%), stopped by %s\n",
			units.Bytes(m.LimitBytes), predicted, m.ActualConnections, off, m.StoppedBy)
	}
	printSummary(stdout, res, *out)
	printKernel(stdout, sum.Kernel, res)
	if sum.Explanation != nil {
		fmt.Fprintln(stdout)
		analysis.WriteText(stdout, *sum.Explanation)
	}
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe run: %v\n", err)
		return exitNotAll
	}
	if int(res.Verified) != res.Requested {
		return exitNotAll
	}
	return exitOK
}

func writeJSONTo(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func printPreflight(w io.Writer, checks []runner.Check) {
	fmt.Fprintln(w, "Preflight: the limits this run will meet")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LIMIT\tVALUE\tNEEDS\t\tACTION")
	for _, c := range checks {
		mark := "ok"
		if !c.OK {
			mark = "!!"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Limit, c.Value, c.Needs, mark, c.Action)
	}
	tw.Flush()
	for _, c := range checks {
		if c.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", c.Limit, c.Note)
		}
	}
}

func printSummary(w io.Writer, res *runner.Result, dir string) {
	fmt.Fprintf(w, "verified %d of %d connections on %s:%d (%d distinct client endpoints, %d source addresses, %d+%d workers)\n",
		res.Verified, res.Requested, res.Server.Addr, res.Server.Port, res.DistinctClientEndpoints,
		res.SourceAddresses, res.Workers.Client, res.Workers.Server)
	fmt.Fprintf(w, "connect %.2fs (%.0f/s), exchange %.2fs, close %.2fs; %.0f verified/s\n",
		res.Phases.ConnectSeconds, res.ConnectRate, res.Phases.ExchangeSeconds, res.Phases.CloseSeconds, res.VerifiedRate)
	if res.Phases.HoldCutShort {
		fmt.Fprintf(w, "hold: cut short by a signal after %.1fs (the exchange was over before it)\n", res.Phases.HoldSeconds)
	}
	if res.Established > 0 {
		fmt.Fprintf(w, "runner memory: %s PSS, %.0f B per connection (both ends); listen overflows %d\n",
			units.Bytes(res.RunnerPss), float64(res.RunnerPss)/float64(res.Established), res.ListenOverflows)
	}
	if len(res.Failed) > 0 {
		var parts []string
		for k, v := range res.Failed {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		fmt.Fprintf(w, "failed: %s\n", strings.Join(parts, ", "))
	}
	if res.Limit != nil {
		fmt.Fprintf(w, "limit: %s at %d connections: %s\n", res.Limit.Kind, res.Limit.At, res.Limit.Detail)
	}
	for _, c := range res.SysctlChanges {
		state := "restored"
		if !c.Restored {
			state = "NOT RESTORED: run c10mprobe restore " + dir
		}
		fmt.Fprintf(w, "sysctl %s %s → %s, %s\n", c.Key, c.Old, c.New, state)
	}
	fmt.Fprintf(w, "run directory: %s\n", dir)
}

func printKernel(w io.Writer, k *kernelSection, res *runner.Result) {
	if k == nil || res.Established == 0 {
		return
	}
	n := float64(res.Established)
	var total float64
	var parts []string
	for _, name := range topCaches(k) {
		c := k.Caches[name]
		if c.BytesPerConnection < 1 {
			continue
		}
		total += c.BytesPerConnection
		parts = append(parts, fmt.Sprintf("%s %.0f", name, c.BytesPerConnection))
	}
	fmt.Fprintf(w, "kernel slab per connection (%s probes): %.0f B = %s\n", k.Backend, total, strings.Join(parts, " + "))
	fmt.Fprintf(w, "tcp_sendmsg on the run's port: %.2f calls, %.1f B per connection; socket buffers at peak p50 %d B, p99 %d B, max %d B (sock_diag)\n",
		float64(k.TCPSendmsg.RunCalls)/n, float64(k.TCPSendmsg.RunBytes)/n, k.SocketMemory.P50, k.SocketMemory.P99, k.SocketMemory.Max)
	if pc := k.ProbeCost; pc != nil {
		var parts []string
		for _, h := range pc.Hooks {
			if h.NsPerConnection >= 50 {
				parts = append(parts, fmt.Sprintf("%s %.1f × %.0f ns", h.Hook, h.RunsPerConnection, h.NsPerRun))
			}
		}
		fmt.Fprintf(w, "probe cost (kernel-timed): %.1f µs of CPU per connection = %s\n", pc.NsPerConnection/1000, strings.Join(parts, " + "))
	}
	if k.Pressure.DirectReclaim+k.Pressure.OOMVictims+k.Pressure.SwapOut > 0 {
		fmt.Fprintf(w, "pressure: direct reclaim %d, OOM victims %d, swap out %d pages\n",
			k.Pressure.DirectReclaim, k.Pressure.OOMVictims, k.Pressure.SwapOut)
	}
	if l := k.Lost; l.Total() > 0 {
		var parts []string
		for _, h := range slices.Sorted(maps.Keys(l.RecursionByHook)) {
			parts = append(parts, fmt.Sprintf("%s %d", h, l.RecursionByHook[h]))
		}
		fmt.Fprintf(w, "lost events %d: maps full %d (sockets %d, kmalloc sites %d, cache pointers %d), allocation stack samples %d, CPU samples %d, skipped by the kernel while the same program ran on the CPU %d (%s)\n",
			l.Total(), l.MapsFull(), l.Sockets, l.Kmalloc, l.Caches, l.Stacks, l.CPUSamples, l.Recursion, strings.Join(parts, ", "))
	}
}

func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	if code, ok := parseFlags(fs, args, stdout, stderr, "  sudo c10mprobe restore runs/20261125T190102Z\n"); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "c10mprobe restore: give exactly one run directory")
		return exitBadInput
	}
	unlock, err := runner.LockHost()
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v; restore after it ends\n", err)
		return exitNotAll
	}
	defer unlock()
	if err := unmountMarkedTracefs(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v\n", err)
	}
	if err := runner.RemoveCgroup(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v\n", err)
	}
	if err := runner.RemoveSwap(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v\n", err)
	}
	changes, err := runner.Restore(fs.Arg(0))
	for _, c := range changes {
		fmt.Fprintf(stdout, "%s: %s (was set to %s) restored=%v\n", c.Key, c.Old, c.New, c.Restored)
	}
	if err != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v\n", err)
		return exitNotAll
	}
	return exitOK
}

// tracefsMarker in a run directory says the run mounted tracefs.
const tracefsMarker = "tracefs-mounted"

func markTracefs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, tracefsMarker), []byte(bpf.TracefsPath+"\n"), 0o644)
}

func unmountMarkedTracefs(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, tracefsMarker)); err != nil {
		return nil
	}
	if err := syscall.Unmount(bpf.TracefsPath, 0); err != nil && err != syscall.EINVAL {
		return fmt.Errorf("unmounting %s: %w", bpf.TracefsPath, err)
	}
	return os.Remove(filepath.Join(dir, tracefsMarker))
}
