package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/spf13/pflag"
)

const runExamples = `  sudo c10mprobe run --conns 100000
  sudo c10mprobe run --conns 1000000 --hold 30s          # then look with ss -s, slabtop
  sudo c10mprobe run --conns 50000 --src 127.0.0.2 --port-range 40000-40999   # ports bind first
  sudo c10mprobe run --conns 5000 --worker-fds 100 --max-workers 2            # fds bind first
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/a       # buffers held...
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/b --sysctl net.ipv4.tcp_rmem="4096 4096 4096"
  c10mprobe compare runs/a runs/b                                               # ...and what tcp_rmem changed
  sudo c10mprobe run --conns 20000 --target 127.0.0.1:8080 --server-cmd 'ulimit -n 4096; exec ./myserver' --exchange echo
  sudo c10mprobe run --conns 50000 --target 127.0.0.1:80 --server-pid $(pgrep -o nginx) --hold 10s   # your server, held
`

// runFlags are run's flags, parsed into the runner's and the probes' terms.
type runFlags struct {
	cfg       runner.Config
	noBPF     bool
	probeCost bool
	backend   bpf.Backend
	kmem      string // census, full or off
	netns     bool
}

const serveExamples = `  sudo c10mprobe serve --listen 0.0.0.0:9999 --conns 100000                    # then dial from other hosts
  sudo c10mprobe serve --listen 198.18.0.1:9999 --conns 50000 --wait 10m --hold 30s
`

const dialExamples = `  sudo c10mprobe dial --target 198.18.0.1:9999 --conns 100000 --index 0 --of 4   # one dialer of four
  sudo c10mprobe dial --target 198.18.0.1:9999 --conns 100000 --of 4              # index from JOB_COMPLETION_INDEX
`

// modeFlags are the flags of run that serve or dial do not take.
var modeFlags = map[runner.Mode][]string{
	runner.ModeRun:   {"index", "of", "wait"},
	runner.ModeServe: {"target", "server-cmd", "server-pid", "exchange", "src", "rate", "inflight", "index", "of", "family", "machine-mem", "ballast", "port-choice", "netns"},
	runner.ModeDial:  {"listen", "server-cmd", "server-pid", "exchange", "wait", "family", "machine-mem", "ballast", "netns"},
}

func parseRunFlags(args []string, stdout io.Writer) (*runFlags, error) {
	return parseModeFlags(runner.ModeRun, args, stdout)
}

// parseModeFlags parses the flags of run, serve or dial: one set, less
// what the mode does not take.
func parseModeFlags(mode runner.Mode, args []string, stdout io.Writer) (*runFlags, error) {
	name, examples, defListen := "run", runExamples, "127.0.0.1:9999"
	switch mode {
	case runner.ModeServe:
		name, examples, defListen = "serve", serveExamples, "0.0.0.0:9999"
	case runner.ModeDial:
		name, examples = "dial", dialExamples
	}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	var (
		conns      cliflag.Count
		listen     = cliflag.AddrPort(netip.MustParseAddrPort(defListen))
		srcs       cliflag.Sources
		portRange  cliflag.PortRange
		sysctls    sysctlsValue
		reserve    cliflag.Size
		payload    cliflag.Size
		memLimit   cliflag.Size
		swap       cliflag.Size
		machineMem cliflag.Size
		ballastSz  cliflag.Size
		inflight   = fs.Int("inflight", 512, "most connects pending at once, over all workers (each client worker gets an equal share, at least one)")
		rate       = fs.Float64("rate", 0, "most new connections per second; 0 for no limit")
		hold       = fs.Duration("hold", 0, "keep every connection open this long after the exchange")
		timeout    = fs.Duration("timeout", 15*time.Second, "end a phase that makes no progress for this long")
		workerFDs  = fs.Uint64("worker-fds", 0, "RLIMIT_NOFILE of each worker (0: the hard limit)")
		maxWorkers = fs.Int("max-workers", 0, "most worker processes per side (0: as many as the fd budget needs)")
		noTune     = fs.Bool("no-tune", false, "change no sysctl (expect SYN drops at high counts)")
		force      = fs.Bool("force", false, "run even when --conns is more than twice what the preflight says memory holds")
		out        = fs.String("out", "", "run directory, new or empty (default runs/<UTC timestamp>)")
		noBPF      = fs.Bool("no-bpf", false, "do not attach the eBPF probes")
		probeCost  = fs.Bool("probe-cost", false, "have the kernel time the probes' programs (BPF_ENABLE_STATS) and report their CPU per connection")
		unread     = fs.Bool("unread", false, "leave the peer's payload queued (with --payload)")
		backendArg = fs.String("backend", "auto", "probe backend: auto, fentry, kprobe, raw_tracepoint or tracepoint")
		target     cliflag.Target
		serverPIDs = fs.IntSlice("server-pid", nil, "the --target server's process (repeatable): measured, not stopped")
		serverCmd  = fs.String("server-cmd", "", "start the --target server with this shell command, in its own process group; stopped after the run")
		exchange   = fs.String("exchange", "", "what each connection does: numbered (the built-in server's, its default), echo (send a number, expect it back: any echo server) or none (connect and hold; --target's default)")
	)
	fs.Var(&target, "target", "dial a server you bring at this address:port of this host instead of starting the built-in one")
	index := fs.Int("index", 0, "dial: this dialer's index, 0 to --of − 1 (default: $JOB_COMPLETION_INDEX, else 0)")
	of := fs.Int("of", 1, "dial: how many dialers share --conns")
	family := fs.String("family", "inet", "socket family: inet, or inet6 with IPv4-mapped addresses (::ffff:127.x.y.z), as a JVM makes them: TCPv6 socks")
	netns := fs.Bool("netns", false, "run both ends in a private network namespace, its established hash sized for --conns (net.ipv4.tcp_child_ehash_entries, restored after): no other program's ports or TIME_WAIT, net.* sysctls confined to it")
	kmem := fs.String("kmem", "census", "the slab hooks: census (count every allocation exactly for the first max(20,000, 10 %) connections, then detach them and check the census against /proc/slabinfo at the peak), full (the whole run: slower) or off")
	portChoice := fs.String("port-choice", string(runner.DefaultPortChoice), "who picks each client socket's port: kernel (at connect, scanning the range for a free one) or runner (bound to a planned address and port: connect checks one 4-tuple; other programs' connect() skips those ports during the run)")
	wait := fs.Duration("wait", 5*time.Minute, "serve: how long to wait for the first dialer (then --timeout ends it once connections stop)")
	fs.Var(&conns, "conns", "connections to open and verify (required)")
	fs.Var(&listen, "listen", "the one server address:port every connection lands on")
	fs.Var(&srcs, "src", "client source addresses or CIDRs (default: as many of 127.0.0.0/8 as needed)")
	fs.Var(&portRange, "port-range", "set net.ipv4.ip_local_port_range to LO-HI for the run")
	fs.Var(&sysctls, "sysctl", "set KEY=VALUE for the run, restored after (repeatable)")
	fs.Var(&memLimit, "mem-limit", "run the workers in a memory cgroup capped at this, e.g. 1GiB: a smaller machine")
	fs.Var(&swap, "swap", "a swapfile of this size for the run, removed after, e.g. 2GiB")
	fs.Var(&machineMem, "machine-mem", "run as on a machine with this much RAM, e.g. 8GiB: the rest is reserved as huge pages, given back after")
	fs.Var(&ballastSz, "ballast", "a process that holds this much anonymous memory and touches it at random, timing each touch: the desktop and heap that go to swap")
	fs.Var(&payload, "payload", "bytes each side sends after the numbered message, e.g. 16KiB")
	fs.Var(&reserve, "reserve", "stop opening when spare memory (free + page cache) falls below this (default max(1GiB, 5% of RAM))")
	if mode == runner.ModeDial {
		fs.Lookup("target").Usage = "the address:port of c10mprobe serve (required)"
		fs.Lookup("conns").Usage = "connections over all dialers; this one opens its share (required)"
		fs.Lookup("hold").Usage = "hold at most this long after the exchange (default: until the server closes)"
	}
	for _, f := range modeFlags[mode] {
		_ = fs.MarkHidden(f)
	}
	if err := parseFlags(fs, args, stdout, examples); err != nil {
		return nil, err
	}
	for _, f := range modeFlags[mode] {
		if fs.Changed(f) {
			return nil, badInput("%s takes no --%s", name, f)
		}
	}
	if mode == runner.ModeDial {
		if !fs.Changed("target") {
			return nil, badInput("dial needs --target ADDR:PORT, where c10mprobe serve listens")
		}
		if !fs.Changed("index") {
			if v := os.Getenv("JOB_COMPLETION_INDEX"); v != "" {
				if _, err := fmt.Sscanf(v, "%d", index); err != nil {
					return nil, badInput("JOB_COMPLETION_INDEX=%q is not a dialer index", v)
				}
			}
		}
	}
	if fs.NArg() > 0 {
		return nil, badInput("unexpected argument %q", fs.Arg(0))
	}
	if conns == 0 {
		return nil, badInput("--conns is required, e.g. --conns 100000")
	}
	backend, err := bpf.ParseBackend(*backendArg)
	if err != nil {
		return nil, badInput("--backend: %v", err)
	}
	if *netns && (fs.Changed("target") || fs.Changed("server-cmd") || fs.Changed("server-pid")) {
		return nil, badInput("--netns runs both ends in a network namespace of their own: a server you bring (--target) is outside it")
	}
	switch *kmem {
	case "census", "full", "off":
	default:
		return nil, badInput("--kmem takes census, full or off, got %q", *kmem)
	}
	if *probeCost && *noBPF {
		return nil, badInput("--probe-cost times the probes, and --no-bpf attaches none: pass one of them")
	}
	for _, name := range []string{"mem-limit", "swap", "reserve", "machine-mem", "ballast"} {
		if f := fs.Lookup(name); f.Changed && f.Value.String() == "0" {
			return nil, badInput("--%s must be more than 0 bytes, got %q", name, f.Value.String())
		}
	}
	switch runner.Exchange(*exchange) {
	case "", runner.ExchangeNumbered, runner.ExchangeEcho, runner.ExchangeNone:
	default:
		return nil, badInput("--exchange takes numbered, echo or none, got %q", *exchange)
	}
	if fs.Changed("listen") && fs.Changed("target") {
		return nil, badInput("--listen places the built-in server and --target names yours: give one of them")
	}
	if *out == "" {
		*out = filepath.Join("runs", time.Now().UTC().Format("20060102T150405Z"))
	}
	rf := &runFlags{
		cfg: runner.Config{
			Conns: int(conns), Listen: netip.AddrPort(listen), Sources: srcs, Inflight: *inflight, Rate: *rate,
			Hold: *hold, Timeout: *timeout, Reserve: uint64(reserve), WorkerFDs: *workerFDs, MaxWorkers: *maxWorkers,
			Force: *force, OutDir: *out, Target: netip.AddrPort(target.AddrPort), Exchange: runner.Exchange(*exchange),
			Mode: mode, Family: runner.Family(*family), PortChoice: runner.PortChoice(*portChoice),
			SysctlSettings: runner.SysctlSettings{PortRange: portRange, Sysctls: sysctls, NoTune: *noTune},
			Memory:         runner.Memory{MemLimit: uint64(memLimit), Swap: uint64(swap), MachineMem: uint64(machineMem), Ballast: uint64(ballastSz)},
			Data:           runner.Data{Payload: int(payload), Unread: *unread},
			Brought:        runner.Brought{ServerPIDs: *serverPIDs, ServerCmd: *serverCmd},
			Spread:         runner.Spread{FirstWait: *wait},
		},
		noBPF: *noBPF, probeCost: *probeCost, backend: backend, kmem: *kmem, netns: *netns,
	}
	if mode == runner.ModeDial {
		rf.cfg.Index, rf.cfg.Of = *index, *of
	}
	return rf, nil
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeRun, args, stdout, stderr)
}
func serveCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeServe, args, stdout, stderr)
}
func dialCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeDial, args, stdout, stderr)
}

// modeCmd is run, serve and dial: one run of the runner, recorded and explained.
func modeCmd(mode runner.Mode, args []string, stdout, stderr io.Writer) error {
	f, err := parseModeFlags(mode, args, stdout)
	if err != nil {
		return err
	}
	if !inNetns() {
		// In --netns's namespace, the process that made it holds the lock.
		unlock, err := host.LockHost()
		if err != nil {
			return fmt.Errorf("%v; runs change host-wide sysctls and must not overlap", err)
		}
		defer unlock()
	}
	if !f.noBPF && os.Geteuid() != 0 {
		return badInput("the eBPF probes need root: rerun with sudo, or pass --no-bpf")
	}
	if f.netns && !inNetns() {
		warnLeftovers(stderr, filepath.Dir(f.cfg.OutDir))
		return runInNetns(f, stderr)
	}
	if inNetns() {
		if err := host.UpLoopback(); err != nil {
			return fmt.Errorf("--netns: bringing up lo in the run's network namespace: %w", err)
		}
		f.cfg.InNetns = true
	} else {
		warnLeftovers(stderr, filepath.Dir(f.cfg.OutDir))
	}
	cfg := f.cfg
	if cfg.Reserve == 0 {
		m, err := procfs.ReadMeminfo()
		if err != nil {
			return fmt.Errorf("reading meminfo: %w", err)
		}
		cfg.Reserve = runner.DefaultReserve(m.MemTotal)
		if cfg.MachineMem > 0 {
			cfg.Reserve = runner.DefaultReserve(cfg.MachineMem) // of the smaller machine
		}
	}

	prog := newProgress(stderr)
	// Signals are taken from here on, before the probes load (seconds on a
	// slow machine): SIGHUP (a closed terminal, a dropped ssh) and SIGQUIT
	// end a run as SIGINT does, where their default would leave the host's
	// sysctls changed or a tracefs mount behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running atomic.Pointer[runner.Runner] // set once the run starts
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		s := <-sigs
		prog.note(fmt.Sprintf("%v: stopping, verifying what is held, restoring (again to abort)", s))
		cancel()
		<-sigs
		prog.note("second signal: killing workers, restoring")
		if r := running.Load(); r != nil {
			r.Abort()
		}
	}()
	var probes *bpf.Probes
	// The recorder reads the probes, which are sized by the plan Prepare
	// makes; the runner calls it only once it runs.
	var rec *record.Recorder
	cfg.Log = stderr
	cfg.OnPhase = func(ph runner.Phase) error { return rec.Phase(ph) }
	cfg.OnSpawn = func(pid int) error { return rec.AddPID(pid) }
	cfg.OnServerUp = func(checks []runner.Check) { printChecks(stderr, "Server: the limits it will meet", checks) }
	cfg.OnBallast = func(pid int) { rec.SetBallast(pid) }
	cfg.OnProgress = func(p runner.Progress) { rec.Progress(p); prog.update(p) }
	r, err := runner.Prepare(cfg)
	if err != nil {
		return err
	}
	// Sized by what this run opens: a dialer's share, not the total.
	conns := r.Conns()
	census := censusConnections(f.kmem, cfg.Mode, conns)
	if !f.noBPF {
		plan := r.Plan()
		port := cfg.Listen.Port()
		if cfg.Target.IsValid() {
			port = cfg.Target.Port()
		}
		probes, err = bpf.Open(bpf.Config{
			Backend: f.backend, Conns: conns, Inflight: cfg.Inflight, RunPort: port,
			Sources: plan.Sources, PortLo: plan.PortLo, PortsPerSource: plan.PortsPerSource, RunDir: cfg.OutDir,
			NoKmem: f.kmem == "off", KmemConns: census, AutoSources: plan.AutoSources,
		})
		if err != nil {
			err = fmt.Errorf("attaching the eBPF probes: %v; pass --no-bpf to run without them", err)
			if f.backend != "" {
				return &exitError{exitBadInput, err}
			}
			return err
		}
		defer probes.Close()
		if f.probeCost {
			if err := probes.TimePrograms(); err != nil {
				return fmt.Errorf("--probe-cost: %v", err)
			}
		}
		fmt.Fprintf(stderr, "probes: %s backend\n", probes.Backend())
	}
	rec = record.New(probes)
	if probes != nil {
		rec.SetKmem(f.kmem)
		if census < conns {
			r.SetCensus(census, rec.Census)
		}
	}
	printPreflight(stderr, r.Preflight())
	if ctx.Err() != nil {
		// The probes' tracefs mount, if any, goes with probes.Close.
		return errors.New("interrupted before the first connection: nothing was opened, and the host is as it was")
	}
	running.Store(r)

	res, err := r.Run(ctx)
	prog.done()
	if res == nil {
		return err
	}
	run := rec.Finish(res, r.Preflight(), r.Host(), stderr)
	if werr := run.Write(cfg.OutDir); werr != nil && err == nil {
		err = werr
	}
	printRun(stdout, run, cfg.OutDir)
	if err != nil {
		return err
	}
	if int(res.Verified) != res.Requested {
		return errNotAll
	}
	return nil
}

func restoreCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	if err := parseFlags(fs, args, stdout, "  sudo c10mprobe restore runs/20261125T190102Z\n"); err != nil {
		return err
	}
	dir, err := oneRunDir(fs)
	if err != nil {
		return err
	}
	unlock, err := host.LockHost()
	if err != nil {
		return fmt.Errorf("%v; restore after it ends", err)
	}
	defer unlock()
	tracefs, terr := bpf.RestoreTracefs(dir)
	if terr != nil {
		fmt.Fprintf(stderr, "c10mprobe restore: %v\n", terr)
	}
	r, err := runner.Restore(dir)
	if tracefs != "" {
		r.Removed = append(r.Removed, tracefs)
	}
	for _, what := range r.Removed {
		fmt.Fprintf(stdout, "removed %s\n", what)
	}
	for _, c := range r.Changes {
		fmt.Fprintln(stdout, changeLine(c))
	}
	if len(r.Removed)+len(r.Changes) == 0 && err == nil {
		fmt.Fprintf(stdout, "%s records nothing left to undo\n", dir)
	}
	return err
}

// printRun prints what a run did and, when it reached its peak, why.
func printRun(w io.Writer, run *record.Run, dir string) {
	res := run.Summary.Result
	if m := res.Memcap; m != nil {
		off := 100 * (float64(m.ActualConnections) - float64(m.PredictedConnections)) / float64(max(1, m.PredictedConnections))
		fmt.Fprintf(w, "memory cap %s: predicted %d connections, held %d (%+.1f %%), stopped by %s\n",
			units.Bytes(m.LimitBytes), m.PredictedConnections, m.ActualConnections, off, m.StoppedBy)
	}
	if m := res.Machine; m != nil {
		fmt.Fprintf(w, "machine %s: swapping began near %s connections (predicted %s), the run stopped at %s (predicted %s), stopped by %s\n",
			units.Bytes(m.MemBytes), units.Count(m.ActualSwapStartConnections), units.Count(m.PredictedSwapStartConnection),
			units.Count(m.ActualConnections), units.Count(m.PredictedConnections), m.StoppedBy)
	}
	if b := res.Ballast; b != nil {
		fmt.Fprintf(w, "ballast %s: %s swapped out at most, %d major faults, touches p50 %.1f µs, p99 %.1f µs, max %.1f ms\n",
			units.Bytes(b.Bytes), units.Bytes(b.SwappedBytesPeak), b.MajorFaults, b.TouchLatencyUs.P50, b.TouchLatencyUs.P99, b.TouchLatencyUs.Max/1000)
	}
	printSummary(w, res, dir)
	printKernel(w, run.Summary.Kernel, res)
	if run.Explanation != nil {
		fmt.Fprintln(w)
		analysis.WriteText(w, *run.Explanation)
	}
}

// warnLeftovers names the runs beside this one that were killed and left the
// host changed: this run would measure, and later restore, a host that is
// not as its owner left it. With the host lock held, none of them is running.
func warnLeftovers(w io.Writer, parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if left := runner.Leftovers(dir); e.IsDir() && len(left) > 0 {
			fmt.Fprintf(w, "note: the run in %s was killed and left the host changed (%s): sudo c10mprobe restore %s\n",
				dir, strings.Join(left, "; "), dir)
		}
	}
}

// minCensus is the fewest connections a census counts: at 20,000 the
// slabinfo delta of every cache of the ledger is far above its per-CPU
// slabs' noise (a few hundred objects).
const minCensus = 20000

// censusConnections is how many connections the slab hooks count: with
// --kmem census at least minCensus or a tenth of the run, all of it when
// that is the whole run; serve, which cannot pause its dialers, counts all.
func censusConnections(kmem string, mode runner.Mode, conns int) int {
	if kmem != "census" || mode == runner.ModeServe {
		return conns
	}
	return min(conns, max(minCensus, conns/10))
}
