package runner

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/hostlock"
	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// TestMain makes this test binary a worker when a run in it starts one (it
// is os.Executable), and takes the host's test turn for the root tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == worker.Arg {
		os.Exit(worker.Main())
	}
	if os.Geteuid() == 0 {
		// One measuring test binary at a time (see cmd/c10mprobe).
		hostlock.Wait("c10mprobe-tests")
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "changes sysctls")
}

// runIn prepares and runs cfg in this process, with a fresh run directory.
func runIn(t *testing.T, cfg Config) (*Result, error) {
	t.Helper()
	cfg.OutDir = filepath.Join(t.TempDir(), "run")
	if cfg.Inflight == 0 {
		cfg.Inflight = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	r, err := Prepare(cfg)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return r.Run(context.Background())
}

func TestRunInProcessVerifiesAndRestores(t *testing.T) {
	needRoot(t)
	backlog, _ := sysctl.Read("net.core.somaxconn")
	input, _ := sysctl.Read("net.core.netdev_max_backlog")
	var phases []Phase
	res, err := runIn(t, Config{Conns: 3000, Listen: netip.MustParseAddrPort("127.0.0.1:19921"), Reserve: 1 << 20,
		Hooks: Hooks{OnPhase: func(p Phase) error { phases = append(phases, p); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified != 3000 || res.ServerSockets != 3000 || res.DistinctClientEndpoints != 3000 || res.Limit != nil || res.StoppedBy != limit.Complete {
		t.Errorf("verified %d, %d sockets on the port, %d endpoints, limit %+v, stopped by %s",
			res.Verified, res.ServerSockets, res.DistinctClientEndpoints, res.Limit, res.StoppedBy)
	}
	if want := []Phase{PhaseIdle, PhaseConnect, PhaseExchange, PhaseClose}; len(phases) != len(want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if v, _ := sysctl.Read("net.core.somaxconn"); v != backlog {
		t.Errorf("somaxconn %s after the run, %s before", v, backlog)
	}
	// The CPUs' input queues hold a message and its answer a connection.
	if n, _ := strconv.Atoi(input); n < 6000 {
		raised := false
		for _, c := range res.SysctlChanges {
			raised = raised || (c.Key == "net.core.netdev_max_backlog" && c.New == "6000" && c.Restored)
		}
		if !raised {
			t.Errorf("netdev_max_backlog %s: the run's changes %+v, want it raised to 6000 and restored", input, res.SysctlChanges)
		}
	}
	if v, _ := sysctl.Read("net.core.netdev_max_backlog"); v != input {
		t.Errorf("netdev_max_backlog %s after the run, %s before", v, input)
	}
}

// A --sysctl the kernel refuses (somaxconn has a minimum of 0) fails the
// run; those set before it are restored all the same.
func TestSysctlIsRestoredWhenALaterOneFails(t *testing.T) {
	needRoot(t)
	rmem, _ := sysctl.Read("net.ipv4.tcp_rmem")
	_, err := runIn(t, Config{Conns: 100, Listen: netip.MustParseAddrPort("127.0.0.1:19922"), Reserve: 1 << 20,
		SysctlSettings: SysctlSettings{Sysctls: []KeyValue{{Key: "net.ipv4.tcp_rmem", Value: "4096 65536 1048576"}, {Key: "net.core.somaxconn", Value: "-5"}}}})
	if err == nil {
		t.Fatal("a sysctl the kernel refuses did not fail the run")
	}
	if v, _ := sysctl.Read("net.ipv4.tcp_rmem"); v != rmem {
		t.Errorf("tcp_rmem %q after the run, %q before", v, rmem)
	}
}

// --max-workers with a tiny fd budget: each worker hits EMFILE, and the
// run names the fd limit at what is held.
func TestRunNamesTheFdLimit(t *testing.T) {
	needRoot(t)
	res, err := runIn(t, Config{Conns: 1000, Listen: netip.MustParseAddrPort("127.0.0.1:19923"), Reserve: 1 << 20,
		WorkerFDs: 100, MaxWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The server workers hold the listener too, so they may accept a
	// connection or two fewer than their clients opened: the limit binds at
	// what is held at both ends.
	if res.Limit == nil || res.Limit.Kind != limit.Fds || res.Limit.At != res.Accepted || res.Verified != res.Accepted || res.Verified < 2*80 {
		t.Fatalf("limit %+v, established %d, accepted %d, verified %d", res.Limit, res.Established, res.Accepted, res.Verified)
	}
}

// Values the kernel would refuse, found before anything changes.
func TestPrepareRefusesSysctlsTheKernelWould(t *testing.T) {
	for _, kv := range []KeyValue{
		{Key: "net.core.somaxconn", Value: "garbage"},
		{Key: "net.ipv4.tcp_rmem", Value: "4096 4096"},
		{Key: "net.ipv4.ip_local_port_range", Value: "80 90"},
		{Key: "net.ipv4.ip_local_port_range", Value: "50000 40000"},
	} {
		_, err := Prepare(Config{Conns: 10, Listen: netip.MustParseAddrPort("127.0.0.1:19924"), Inflight: 1, Timeout: time.Second,
			SysctlSettings: SysctlSettings{Sysctls: []KeyValue{kv}}, OutDir: filepath.Join(t.TempDir(), "run")})
		if !IsBadInput(err) || !strings.Contains(err.Error(), kv.Value) && !strings.Contains(err.Error(), strings.Replace(kv.Value, " ", "-", 1)) {
			t.Errorf("%s=%q: %v, want bad input naming the value", kv.Key, kv.Value, err)
		}
	}
}

// The plan and the preflight use the values a run sets, not the host's.
func TestPrepareSeesTheSysctlsInForce(t *testing.T) {
	needRoot(t)
	r, err := Prepare(Config{Conns: 3000, Listen: netip.MustParseAddrPort("127.0.0.1:19925"), Inflight: 1, Timeout: time.Second,
		Sources:        []netip.Addr{netip.MustParseAddr("127.0.0.2")},
		SysctlSettings: SysctlSettings{Sysctls: []KeyValue{{Key: "net.ipv4.ip_local_port_range", Value: "40000 40499"}, {Key: "net.ipv4.tcp_mem", Value: "2000 4000 8000"}}},
		OutDir:         filepath.Join(t.TempDir(), "run")})
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Plan(); p.PortsPerSource != 500 || p.PortLo != 40000 {
		t.Errorf("plan: %d ports from %d, want 500 from 40000", p.PortsPerSource, p.PortLo)
	}
	if h := r.Host(); h.TCPMemPages != [3]int64{2000, 4000, 8000} {
		t.Errorf("host tcp_mem %v", h.TCPMemPages)
	}
	for _, c := range r.Preflight() {
		if c.Limit == "source ports" && (c.OK || !strings.Contains(c.Value, "500 per address")) {
			t.Errorf("preflight: %+v", c)
		}
	}
}

// A census pauses every client at its share until the census is taken:
// sock_diag, asked twice inside the callback, sees the same count of
// established connections to the port as the callback was given, and the
// run then goes on to open and verify the rest.
func TestCensusPausesOpeningThenResumes(t *testing.T) {
	needRoot(t)
	const port = 19923
	established := func() (n uint64) {
		err := sockdiag.DumpIPv4(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
			if s.Remote.Port() == port {
				n++ // the client end: one per connection
			}
		})
		if err != nil {
			t.Error(err)
		}
		return n
	}
	cfg := Config{Conns: 6000, Listen: netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port)), Reserve: 1 << 20,
		MaxWorkers: 3, WorkerFDs: 2100, Inflight: 64, Timeout: 5 * time.Second}
	cfg.OutDir = filepath.Join(t.TempDir(), "run")
	r, err := Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var at, first, second uint64
	r.SetCensus(1500, func(n uint64) error {
		at, first = n, established()
		time.Sleep(300 * time.Millisecond)
		second = established()
		return nil
	})
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if at != 1500 || first != at || second != at {
		t.Errorf("census at %d connections; sock_diag saw %d, then %d 300 ms later: want 1,500 each time", at, first, second)
	}
	if res.Verified != 6000 {
		t.Errorf("verified %d of 6,000 after the census", res.Verified)
	}
}

// The parent takes oom_score_adj −1000 where it may (CAP_SYS_RESOURCE), out
// of the OOM killer's reach, and its workers, which inherit it, raise
// theirs to 1000: the OOM killer's first choice. Where it may not, it says
// so and keeps its own.
func TestParentIsShieldedFromTheOOMKiller(t *testing.T) {
	needRoot(t)
	read := func(pid string) string {
		b, err := os.ReadFile("/proc/" + pid + "/oom_score_adj")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	before := read("self")
	h, err := ReadHost()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	var parent, workers []string
	res, err := runIn(t, Config{Conns: 2000, Listen: netip.MustParseAddrPort("127.0.0.1:19928"), Reserve: 1 << 20,
		Hooks: Hooks{OnSpawn: func(pid int) error { pids = append(pids, pid); return nil },
			OnPhase: func(p Phase) error {
				// Once connected, each worker is past its start.
				if p == PhaseConnect {
					parent = append(parent, read("self"))
					for _, pid := range pids[1:] {
						workers = append(workers, read(fmt.Sprint(pid)))
					}
				}
				return nil
			}}})
	if err != nil {
		t.Fatal(err)
	}
	want, shielded := before, h.CanRaiseNoFile || before == "-1000"
	if shielded {
		want = "-1000"
	}
	if res.ParentOOMShielded != shielded || len(parent) != 1 || parent[0] != want {
		t.Errorf("CAP_SYS_RESOURCE %v: shielded %v, the parent's oom_score_adj %v during the run, want %s", h.CanRaiseNoFile, res.ParentOOMShielded, parent, want)
	}
	for i, w := range workers {
		if w != "1000" {
			t.Errorf("worker %d: oom_score_adj %s, want 1000", i, w)
		}
	}
	if len(workers) == 0 {
		t.Error("no worker seen")
	}
}
