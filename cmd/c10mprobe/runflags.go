package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

// runFlags are run's flags, parsed into the runner's and the probes' terms.
type runFlags struct {
	cfg       runner.Config
	noBPF     bool
	probeCost bool
	backend   bpf.Backend
	kmem      record.Kmem
	netns     bool
}

// modeFlags are the flags of run that serve or dial do not take.
var modeFlags = map[runner.Mode][]string{
	runner.ModeRun:   {"index", "of", "wait"},
	runner.ModeServe: {"target", "server-cmd", "server-pid", "exchange", "src", "rate", "inflight", "index", "of", "family", "machine-mem", "ballast", "port-choice", "netns"},
	runner.ModeDial:  {"listen", "server-cmd", "server-pid", "exchange", "wait", "family", "machine-mem", "ballast", "netns"},
}

// flagVars are the values of run, serve and dial's flags as parsed.
type flagVars struct {
	conns                             cliflag.Count
	listen                            cliflag.AddrPort
	target                            cliflag.Target
	srcs                              cliflag.Sources
	portRange                         cliflag.PortRange
	sysctls                           cliflag.Sysctls
	size                              sizes
	inflight, maxWorkers, index, of   int
	rate                              float64
	hold, timeout, wait               time.Duration
	workerFDs                         uint64
	is                                switches
	out, backend, serverCmd, exchange string
	family, kmem, portChoice          string
	serverPIDs                        []int
}

// sizes are the flags given in bytes.
type sizes struct{ reserve, payload, memLimit, swap, machineMem, ballast cliflag.Size }

// switches are the flags that are on or off.
type switches struct{ noTune, force, noBPF, probeCost, unread, netns bool }

// define adds the flags to fs, with the mode's default listen address.
func (v *flagVars) define(fs *pflag.FlagSet, defListen string) {
	v.listen = cliflag.AddrPort(netip.MustParseAddrPort(defListen))
	fs.IntVar(&v.inflight, "inflight", 512, "most connects pending at once, over all workers (each client worker gets an equal share, at least one)")
	fs.Float64Var(&v.rate, "rate", 0, "most new connections per second; 0 for no limit")
	fs.DurationVar(&v.hold, "hold", 0, "keep every connection open this long after the exchange")
	fs.DurationVar(&v.timeout, "timeout", 15*time.Second, "end a phase that makes no progress for this long")
	fs.Uint64Var(&v.workerFDs, "worker-fds", 0, "RLIMIT_NOFILE of each worker (0: the hard limit)")
	fs.IntVar(&v.maxWorkers, "max-workers", 0, "most worker processes per side (0: as many as the fd budget needs)")
	fs.BoolVar(&v.is.noTune, "no-tune", false, "change no sysctl (expect SYN drops at high counts)")
	fs.BoolVar(&v.is.force, "force", false, "run even when --conns is more than twice what the preflight says memory holds")
	fs.StringVar(&v.out, "out", "", "run directory, new or empty (default runs/<UTC timestamp>)")
	fs.BoolVar(&v.is.noBPF, "no-bpf", false, "do not attach the eBPF probes")
	fs.BoolVar(&v.is.probeCost, "probe-cost", false, "have the kernel time the probes' programs (BPF_ENABLE_STATS) and report their CPU per connection")
	fs.BoolVar(&v.is.unread, "unread", false, "leave the peer's payload queued (with --payload)")
	fs.StringVar(&v.backend, "backend", "auto", "probe backend: auto, fentry, kprobe, raw_tracepoint or tracepoint")
	fs.IntSliceVar(&v.serverPIDs, "server-pid", nil, "the --target server's process (repeatable): measured, not stopped")
	fs.StringVar(&v.serverCmd, "server-cmd", "", "start the --target server with this shell command, in its own process group; stopped after the run")
	fs.StringVar(&v.exchange, "exchange", "", "what each connection does: numbered (the built-in server's, its default), echo (send a number, expect it back: any echo server) or none (connect and hold; --target's default)")
	fs.Var(&v.target, "target", "dial a server you bring at this address:port of this host instead of starting the built-in one")
	fs.IntVar(&v.index, "index", 0, "dial: this dialer's index, 0 to --of − 1 (default: $JOB_COMPLETION_INDEX, else 0)")
	fs.IntVar(&v.of, "of", 1, "dial: how many dialers share --conns")
	fs.StringVar(&v.family, "family", "inet", "socket family: inet, or inet6 with IPv4-mapped addresses (::ffff:127.x.y.z), as a JVM makes them: TCPv6 socks")
	fs.BoolVar(&v.is.netns, "netns", false, "run both ends in a private network namespace, its established hash sized for --conns (net.ipv4.tcp_child_ehash_entries, restored after): no other program's ports or TIME_WAIT, net.* sysctls confined to it")
	fs.StringVar(&v.kmem, "kmem", "census", "the slab hooks: census (count every allocation exactly for the first max(20,000, 10 %) connections, then detach them and check the census against /proc/slabinfo at the peak), full (the whole run: slower) or off")
	fs.StringVar(&v.portChoice, "port-choice", string(runner.DefaultPortChoice), "who picks each client socket's port: kernel (at connect, scanning the range for a free one) or runner (bound to a planned address and port: connect checks one 4-tuple; other programs' connect() skips those ports during the run)")
	fs.DurationVar(&v.wait, "wait", 5*time.Minute, "serve: how long to wait for the first dialer (then --timeout ends it once connections stop)")
	fs.Var(&v.conns, "conns", "connections to open and verify (required)")
	fs.Var(&v.listen, "listen", "the one server address:port every connection lands on")
	fs.Var(&v.srcs, "src", "client source addresses or CIDRs (default: as many of 127.0.0.0/8 as needed)")
	fs.Var(&v.portRange, "port-range", "set net.ipv4.ip_local_port_range to LO-HI for the run")
	fs.Var(&v.sysctls, "sysctl", "set KEY=VALUE for the run, restored after (repeatable)")
	fs.Var(&v.size.memLimit, "mem-limit", "run the workers in a memory cgroup capped at this, e.g. 1GiB: a smaller machine")
	fs.Var(&v.size.swap, "swap", "a swapfile of this size for the run, removed after, e.g. 2GiB")
	fs.Var(&v.size.machineMem, "machine-mem", "run as on a machine with this much RAM, e.g. 8GiB: the rest is reserved as huge pages, given back after")
	fs.Var(&v.size.ballast, "ballast", "a process that holds this much anonymous memory and touches it at random, timing each touch: the desktop and heap that go to swap")
	fs.Var(&v.size.payload, "payload", "bytes each side sends after the numbered message, e.g. 16KiB")
	fs.Var(&v.size.reserve, "reserve", "stop opening when spare memory (free + page cache) falls below this (default max(1GiB, 5% of RAM))")
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
	var v flagVars
	v.define(fs, defListen)
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
		if err := v.dialIndex(fs); err != nil {
			return nil, err
		}
	}
	backend, err := v.check(fs)
	if err != nil {
		return nil, err
	}
	return v.runFlags(mode, backend), nil
}

// dialIndex checks dial's --target and takes its index from an Indexed
// Job's JOB_COMPLETION_INDEX unless --index is given.
func (v *flagVars) dialIndex(fs *pflag.FlagSet) error {
	if !fs.Changed("target") {
		return badInput("dial needs --target ADDR:PORT, where c10mprobe serve listens")
	}
	if !fs.Changed("index") {
		if e := os.Getenv("JOB_COMPLETION_INDEX"); e != "" {
			if _, err := fmt.Sscanf(e, "%d", &v.index); err != nil {
				return badInput("JOB_COMPLETION_INDEX=%q is not a dialer index", e)
			}
		}
	}
	return nil
}

// check refuses what no run can do, each in one sentence, and parses the
// probe backend.
func (v *flagVars) check(fs *pflag.FlagSet) (bpf.Backend, error) {
	if fs.NArg() > 0 {
		return "", badInput("unexpected argument %q", fs.Arg(0))
	}
	if v.conns == 0 {
		return "", badInput("--conns is required, e.g. --conns 100000")
	}
	backend, err := bpf.ParseBackend(v.backend)
	if err != nil {
		return "", badInput("--backend: %v", err)
	}
	if v.is.netns && (fs.Changed("target") || fs.Changed("server-cmd") || fs.Changed("server-pid")) {
		return "", badInput("--netns runs both ends in a network namespace of their own: a server you bring (--target) is outside it")
	}
	if _, err := record.ParseKmem(v.kmem); err != nil {
		return "", badInput("%v", err)
	}
	if v.is.probeCost && v.is.noBPF {
		return "", badInput("--probe-cost times the probes, and --no-bpf attaches none: pass one of them")
	}
	for _, name := range []string{"mem-limit", "swap", "reserve", "machine-mem", "ballast"} {
		if f := fs.Lookup(name); f.Changed && f.Value.String() == "0" {
			return "", badInput("--%s must be more than 0 bytes, got %q", name, f.Value.String())
		}
	}
	switch runner.Exchange(v.exchange) {
	case "", runner.ExchangeNumbered, runner.ExchangeEcho, runner.ExchangeNone:
	default:
		return "", badInput("--exchange takes numbered, echo or none, got %q", v.exchange)
	}
	if fs.Changed("listen") && fs.Changed("target") {
		return "", badInput("--listen places the built-in server and --target names yours: give one of them")
	}
	return backend, nil
}

// runFlags puts the values in the runner's and the probes' terms.
func (v *flagVars) runFlags(mode runner.Mode, backend bpf.Backend) *runFlags {
	if v.out == "" {
		v.out = filepath.Join("runs", time.Now().UTC().Format("20060102T150405Z"))
	}
	rf := &runFlags{
		cfg: runner.Config{
			Conns: int(v.conns), Listen: netip.AddrPort(v.listen), Sources: v.srcs, Inflight: v.inflight, Rate: v.rate,
			Hold: v.hold, Timeout: v.timeout, Reserve: uint64(v.size.reserve), WorkerFDs: v.workerFDs, MaxWorkers: v.maxWorkers,
			Force: v.is.force, OutDir: v.out, Target: netip.AddrPort(v.target.AddrPort), Exchange: runner.Exchange(v.exchange),
			Mode: mode, Family: runner.Family(v.family), PortChoice: runner.PortChoice(v.portChoice),
			SysctlSettings: runner.SysctlSettings{PortRange: v.portRange, Sysctls: sysctlsOf(v.sysctls), NoTune: v.is.noTune},
			Memory:         runner.Memory{MemLimit: uint64(v.size.memLimit), Swap: uint64(v.size.swap), MachineMem: uint64(v.size.machineMem), Ballast: uint64(v.size.ballast)},
			Data:           runner.Data{Payload: int(v.size.payload), Unread: v.is.unread},
			Brought:        runner.Brought{ServerPIDs: v.serverPIDs, ServerCmd: v.serverCmd},
			Spread:         runner.Spread{FirstWait: v.wait},
		},
		noBPF: v.is.noBPF, probeCost: v.is.probeCost, backend: backend, kmem: record.Kmem(v.kmem), netns: v.is.netns,
	}
	if mode == runner.ModeDial {
		rf.cfg.Index, rf.cfg.Of = v.index, v.of
	}
	return rf
}

// sysctlsOf is --sysctl in the runner's terms.
func sysctlsOf(kvs cliflag.Sysctls) []runner.KeyValue {
	var out []runner.KeyValue
	for _, kv := range kvs {
		out = append(out, runner.KeyValue{Key: kv.Key, Value: kv.Value})
	}
	return out
}
