package main

// Root tests: real runs of the built binary, checked against the kernel's own
// accounts (ss, sock_diag, /proc/sys) rather than the tool's counters.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/hostlock"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/runner"
)

var toolBinary string

func TestMain(m *testing.M) {
	// One measuring test binary at a time: each package's slab and socket
	// counts are off while another's tests open or close thousands of
	// sockets, and go test runs packages at once unless given -p 1.
	hostlock.Wait("c10mprobe-tests")
	dir, err := os.MkdirTemp("", "c10mprobe-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	toolBinary = filepath.Join(dir, "c10mprobe")
	// Built as make build does: the lean worker beside the tool.
	for _, b := range [][2]string{{toolBinary, "."}, {filepath.Join(dir, runner.WorkerBinary), "../c10mprobe-worker"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b[0], err, out)
			os.Exit(1)
		}
	}
	os.Chmod(dir, 0o755) // the non-root test runs it as nobody
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: opens tens of thousands of sockets and changes sysctls")
	}
}

// watched are the sysctls a run may change; every test checks they come back.
var watched = []string{"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "kernel.bpf_stats_enabled"}

func sysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range watched {
		v, err := sysctl.Read(k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

func assertSysctls(t *testing.T, want map[string]string) {
	t.Helper()
	for k, v := range sysctls(t) {
		if want[k] != v {
			t.Errorf("sysctl %s is %q after the run, was %q", k, v, want[k])
		}
	}
}

// assertNoWorkers checks that no process listed in the run's workers.pids lives.
func assertNoWorkers(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "workers.pids"))
	if err != nil {
		t.Fatalf("reading workers.pids: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		pid, _ := strconv.Atoi(strings.Fields(line)[0])
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("worker %s still alive after the run", line)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

type result struct {
	stdout, stderr string
	code           int
	dir            string
}

func start(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(toolBinary, append([]string{"run", "--out", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr, dir
}

func finish(t *testing.T, cmd *exec.Cmd, stdout, stderr *bytes.Buffer, dir string) result {
	t.Helper()
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code, dir}
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd, o, e, dir := start(t, args...)
	return finish(t, cmd, o, e, dir)
}

func readSummary(t testing.TB, r result) summary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, "summary.json"))
	if err != nil {
		t.Fatalf("reading summary.json: %v\nstderr:\n%s", err, r.stderr)
	}
	var s summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// countOnPort asks sock_diag how many established sockets sit on port.
func countOnPort(t *testing.T, port uint16) int {
	t.Helper()
	n := 0
	err := sockdiag.DumpIPv4(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		if s.Local.Port() == port {
			n++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ssCount counts established sockets on a local port with iproute2's ss.
func ssCount(t *testing.T, port int) int {
	t.Helper()
	out, err := exec.Command("ss", "-Htn", "state", "established", fmt.Sprintf("( sport = :%d )", port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	return bytes.Count(out, []byte("\n"))
}

func TestRunVerifiesAllOnOnePortPastOneProcessFdBudget(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n, port = 30000, 19901
	cmd, o, e, dir := start(t, "--conns", strconv.Itoa(n), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--hold", "4s", "--probe-cost")
	// While the run holds, the kernel must show n server sockets on the one port.
	seen := 0
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && seen < n; time.Sleep(200 * time.Millisecond) {
		seen = ssCount(t, port)
	}
	r := finish(t, cmd, o, e, dir)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if seen != n {
		t.Errorf("ss saw %d established sockets on port %d during the hold, want %d", seen, port, n)
	}
	s := readSummary(t, r)
	if s.Verified != n || s.Established != n || s.Accepted != n || len(s.Failed) != 0 || s.Limit != nil {
		t.Errorf("summary: verified %d established %d accepted %d failed %v limit %v", s.Verified, s.Established, s.Accepted, s.Failed, s.Limit)
	}
	if s.Server.Port != port || s.ServerSockets != n || s.DistinctClientEndpoints != n {
		t.Errorf("one port: server %+v, %d sockets on it, %d distinct client endpoints", s.Server, s.ServerSockets, s.DistinctClientEndpoints)
	}
	// 30,000 sockets per side do not fit one process's 20,000 fds.
	if s.Workers.Client < 2 || s.Workers.Server < 2 {
		t.Errorf("workers %+v: one process cannot hold %d sockets", s.Workers, n)
	}
	if s.RunnerPss == 0 || s.Phases.ConnectSeconds <= 0 || s.Phases.ExchangeSeconds <= 0 || s.Phases.CloseSeconds <= 0 {
		t.Errorf("pss %d phases %+v", s.RunnerPss, s.Phases)
	}
	for _, c := range s.SysctlChanges {
		if !c.Restored {
			t.Errorf("summary says %s not restored", c.Key)
		}
	}
	if left := countOnPort(t, port); left != 0 {
		t.Errorf("%d sockets left on port %d after the run", left, port)
	}
	assertNoWorkers(t, r.dir)
	if filepath.Base(s.WorkerExecutable) != runner.WorkerBinary {
		t.Errorf("workers ran %q, want the lean %s beside the tool", s.WorkerExecutable, runner.WorkerBinary)
	}
	assertSysctls(t, before)
	assertKernelSection(t, s, n)
	assertProbeCost(t, s, n, r.stdout)
	assertSeriesEnds(t, r, n)
}

// assertSeriesEnds: the time series ends on the run's final counts.
func assertSeriesEnds(t *testing.T, r result, n int) {
	t.Helper()
	var series []struct {
		Phase    string `json:"phase"`
		Verified uint64 `json:"verified"`
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "timeseries.json"))
	if err != nil || json.Unmarshal(data, &series) != nil || len(series) == 0 {
		t.Fatalf("timeseries.json: %v", err)
	}
	if last := series[len(series)-1]; last.Verified != uint64(n) {
		t.Errorf("the time series ends at %d verified (%s), want %d", last.Verified, last.Phase, n)
	}
}

// assertProbeCost holds the kernel's own run counts of the programs against
// what every connection must trigger.
func assertProbeCost(t *testing.T, s summary, n int, stdout string) {
	t.Helper()
	pc := s.Kernel.ProbeCost
	if pc == nil {
		t.Fatal("--probe-cost: no kernel.probe_cost in summary.json")
	}
	runs := map[string]uint64{}
	for _, h := range pc.Hooks {
		runs[h.Hook] = h.Runs
		if h.Runs > 0 && h.NsPerRun <= 0 {
			t.Errorf("%s: %d runs in %.0f ns each", h.Hook, h.Runs, h.NsPerRun)
		}
	}
	// SYN_SENT, and ESTABLISHED at each end; one message each way; two
	// TCP socks, files, inodes and dentries.
	if runs["inet_sock_set_state"] < uint64(3*n) || runs["tcp_sendmsg"] < uint64(2*n) || runs["kmem_cache_alloc"] < uint64(8*n) {
		t.Errorf("program runs %v for %d connections", runs, n)
	}
	// No program can have run longer than every CPU did over the run: a
	// unit slip (µs for ns) fails here.
	ph := s.Phases
	wall := (ph.ConnectSeconds + ph.ExchangeSeconds + ph.CloseSeconds + 4) * 1e9 // + the 4 s hold
	if busy := pc.NsPerConnection * float64(n); busy > wall*float64(runtime.NumCPU()) {
		t.Errorf("programs ran %.0f ns in all, more than %d CPUs × %.0f ns", busy, runtime.NumCPU(), wall)
	}
	for _, h := range pc.Hooks {
		if h.Runs > 1000 && (h.NsPerRun < 5 || h.NsPerRun > 100000) {
			t.Errorf("%s: %.0f ns a run", h.Hook, h.NsPerRun)
		}
	}
	if pc.NsPerConnection <= 0 || !strings.Contains(stdout, "probe cost (kernel-timed)") {
		t.Errorf("probe cost %.0f ns per connection; stdout:\n%s", pc.NsPerConnection, stdout)
	}
}

// assertKernelSection holds the probes' numbers against /proc/slabinfo (read
// by the recorder at the same moments) and against what the run did.
func assertKernelSection(t *testing.T, s summary, n int) {
	t.Helper()
	k := s.Kernel
	if k == nil {
		t.Fatal("summary.json has no kernel section")
	}
	if k.Backend != "raw_tracepoint" {
		t.Errorf("backend %q, want raw_tracepoint on this kernel", k.Backend)
	}
	tcp, ok := k.Caches["TCP"]
	if !ok {
		t.Fatalf("no TCP cache in %v", k.Caches)
	}
	// Two TCP socks a connection, 2,368 B each on this kernel.
	if want := 2 * float64(tcp.ObjectSize); tcp.BytesPerConnection < 0.95*want || tcp.BytesPerConnection > 1.05*want {
		t.Errorf("TCP %.0f B per connection, want about %.0f", tcp.BytesPerConnection, want)
	}
	for name, c := range k.Caches {
		// Something on our machines walks /proc/PID/fd of every process:
		// its /proc inodes, dentries and LSM blobs show in slabinfo with no
		// allocation event (see the bpf tests).
		if procAffected[name] || c.SlabinfoDelta < 1000 {
			continue
		}
		if d := float64(c.Live - c.SlabinfoDelta); d > 0.05*float64(c.SlabinfoDelta) || -d > 0.05*float64(c.SlabinfoDelta) {
			t.Errorf("%s: probe %d live objects, /proc/slabinfo %+d", name, c.Live, c.SlabinfoDelta)
		}
	}
	if k.TCPSendmsg.RunCalls < uint64(2*n) || k.TCPSendmsg.RunBytes < uint64(8*n) {
		t.Errorf("tcp_sendmsg %+v, want ≥ %d calls and ≥ %d bytes", k.TCPSendmsg, 2*n, 8*n)
	}
	if k.SocketMemory.SockDiag.Count != uint64(2*n) || k.SocketMemory.Probe.Count != uint64(2*n) {
		t.Errorf("socket memory over %d sockets (sock_diag) and %d (probe map), want %d", k.SocketMemory.SockDiag.Count, k.SocketMemory.Probe.Count, 2*n)
	}
	if k.Lost.MapsFull() != 0 {
		t.Errorf("lost events: %+v", k.Lost)
	}
	// An interrupt whose softirq frees memory inside a running program
	// loses that event: a few in a million here, more while the machine
	// frees in bulk (RCU callbacks of an earlier run's sockets), and never
	// more than the events themselves allow.
	var events uint64
	for _, c := range k.Caches {
		events += c.Allocs + c.Frees
	}
	if k.Lost.Recursion > events/100 {
		t.Errorf("%d recursion misses (%v) in %d watched slab events", k.Lost.Recursion, k.Lost.RecursionByHook, events)
	}
	if dropped := k.StackCollisions + k.Lost.Stacks; dropped > 5+k.StackSamples/50 {
		t.Errorf("%d of %d stack samples dropped (collisions %d)", dropped, k.StackSamples+dropped, k.StackCollisions)
	}
	// One sample in stack_sample_every of the run's watched slab and page
	// allocations, whose counts stand against /proc/slabinfo above: the
	// samples taken must be that many (a countdown on each CPU).
	var ticks uint64
	for _, c := range k.Caches {
		ticks += c.RunAllocs
	}
	for _, a := range k.Pages.RunAllocsByOrder {
		ticks += a
	}
	want := float64(ticks) / float64(k.StackSampleEvery)
	if got := float64(k.StackSamples + k.StackCollisions + k.Lost.Stacks); math.Abs(got-want) > 2+float64(runtime.NumCPU())+0.01*want {
		t.Errorf("%.0f stack samples, want %.0f: %d run allocations, one in %d", got, want, ticks, k.StackSampleEvery)
	}
	if len(k.KmallocSites) == 0 || k.KmallocSites[0].Bytes == 0 || strings.HasPrefix(k.KmallocSites[0].Function, "0x") {
		t.Errorf("kmalloc call sites: %+v", k.KmallocSites)
	}
}

var procAffected = map[string]bool{"dentry": true, "proc_inode_cache": true, "lsm_inode_cache": true}

func TestPortsBindFirstWithOneSourceAndANarrowRange(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	r := run(t, "--conns", "3000", "--listen", "127.0.0.1:19902", "--src", "127.0.0.2", "--port-range", "40000-40999")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Limit == nil || s.Limit.Kind != "ports" || !strings.Contains(s.Limit.Detail, "127.0.0.2") || !strings.Contains(s.Limit.Detail, "40000–40999") {
		t.Fatalf("limit %+v, want ports on 127.0.0.2", s.Limit)
	}
	// 1,000 ports, less any another program holds.
	if s.Verified < 900 || s.Verified > 1000 || s.Limit.At != s.Established {
		t.Errorf("verified %d, limit at %d, established %d; want about 1,000", s.Verified, s.Limit.At, s.Established)
	}
	if s.Failed["no_source_port"] == 0 {
		t.Errorf("failures %v do not count no_source_port", s.Failed)
	}
	if !strings.Contains(r.stdout, "no free source ports on 127.0.0.2") {
		t.Errorf("stdout does not name the limit:\n%s", r.stdout)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

func TestFdsBindFirstWithATinyPerWorkerBudget(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	r := run(t, "--conns", "2000", "--listen", "127.0.0.1:19903", "--worker-fds", "200", "--max-workers", "2")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Limit == nil || s.Limit.Kind != "fds" || !strings.Contains(s.Limit.Detail, "RLIMIT_NOFILE 200") {
		t.Fatalf("limit %+v, want fds", s.Limit)
	}
	// Two workers a side, each below 200 fds, its own few included.
	if s.Verified == 0 || s.Verified > 2*200 || s.Failed["emfile"] == 0 {
		t.Errorf("verified %d, failures %v", s.Verified, s.Failed)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

func TestKilledWorkerIsNamedAndNothingIsLeft(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "20000", "--listen", "127.0.0.1:19904", "--rate", "4000", "--max-workers", "2", "--worker-fds", "12000")
	var victim int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && victim == 0; time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(filepath.Join(dir, "workers.pids"))
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[1] == "client" {
				victim, _ = strconv.Atoi(f[0])
			}
		}
	}
	if victim == 0 {
		cmd.Process.Kill()
		t.Fatal("no client worker appeared in workers.pids")
	}
	time.Sleep(time.Second)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := finish(t, cmd, o, e, dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Limit == nil || s.Limit.Kind != "worker_died" || !strings.Contains(s.Limit.Detail, strconv.Itoa(victim)) || !strings.Contains(s.Limit.Detail, "SIGKILL") {
		t.Errorf("limit %+v, want worker_died naming pid %d and SIGKILL", s.Limit, victim)
	}
	if s.Established >= 20000 {
		t.Errorf("established %d: the run did not end at the death", s.Established)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
	if left := countOnPort(t, 19904); left != 0 {
		t.Errorf("%d sockets left on the port", left)
	}
}

func TestSIGINTMidConnectRestoresAndLeavesNothing(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "50000", "--listen", "127.0.0.1:19905", "--rate", "5000",
		"--sysctl", "net.ipv4.tcp_rmem=4096 65536 1048576")
	time.Sleep(2 * time.Second)
	if v, _ := sysctl.Read("net.ipv4.tcp_rmem"); v != "4096 65536 1048576" {
		t.Errorf("tcp_rmem during the run = %q: --sysctl not applied", v)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	r := finish(t, cmd, o, e, dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Limit == nil || s.Limit.Kind != "interrupted" {
		t.Errorf("limit %+v, want interrupted", s.Limit)
	}
	// What was held was still verified.
	if s.Established == 0 || s.Established >= 50000 || s.Verified != s.Established {
		t.Errorf("established %d verified %d", s.Established, s.Verified)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

// A wildcard --listen takes connections to 127.0.0.1 on its port, and the
// kernel's count of them holds.
func TestWildcardListenAndExportsWithoutProbes(t *testing.T) {
	needRoot(t)
	const n, port = 5000, 19911
	r := run(t, "--conns", strconv.Itoa(n), "--listen", fmt.Sprintf("0.0.0.0:%d", port), "--no-bpf")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	s := readSummary(t, r)
	if s.Verified != n || s.ServerSockets != n || s.DistinctClientEndpoints != n {
		t.Errorf("verified %d, server sockets %d, distinct client endpoints %d; want %d each", s.Verified, s.ServerSockets, s.DistinctClientEndpoints, n)
	}
	// Without probes there are no stacks: no empty profiles, and export
	// says why it skips them.
	if _, err := os.Stat(filepath.Join(r.dir, "kernel-alloc.pb.gz")); err == nil {
		t.Error("a run without probes wrote kernel-alloc.pb.gz")
	}
	cmd := exec.Command(toolBinary, "export", r.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "report.html") || strings.Contains(stdout.String(), ".pb.gz") ||
		!strings.Contains(stderr.String(), "skipped kernel-alloc.pb.gz: the run had no eBPF probes (--no-bpf)") {
		t.Errorf("export of a run without probes: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
}

// Without c10mprobe-worker beside it (go run, a lone copy), c10mprobe runs
// its workers by re-executing itself.
func TestWorkersWithoutTheLeanBinary(t *testing.T) {
	needRoot(t)
	lone := filepath.Join(t.TempDir(), "c10mprobe")
	data, err := os.ReadFile(toolBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	const n = 2000
	out, err := exec.Command(lone, "run", "--conns", strconv.Itoa(n), "--listen", "127.0.0.1:19913", "--no-bpf", "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := readSummary(t, result{dir: dir})
	if s.Verified != n || s.WorkerExecutable != lone {
		t.Errorf("verified %d, workers ran %q; want %d and %s", s.Verified, s.WorkerExecutable, n, lone)
	}
}

// startHolding starts a run without probes and returns once the kernel
// shows all n connections on the port, the run then holding them.
func startHolding(t *testing.T, n, port int, hold string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer, string) {
	t.Helper()
	cmd, o, e, dir := start(t, "--conns", strconv.Itoa(n), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--no-bpf", "--hold", hold)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ssCount(t, port) < n; time.Sleep(100 * time.Millisecond) {
	}
	return cmd, o, e, dir
}

// A signal during --hold ends the hold, says so, and restores; what was
// verified before it stands.
func TestSIGTERMDuringHoldCutsItShort(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n, port = 20000, 19912
	cmd, o, e, dir := startHolding(t, n, port, "60s")
	time.Sleep(500 * time.Millisecond) // into the hold
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := finish(t, cmd, o, e, dir)
	s := readSummary(t, r)
	if r.code != 0 || s.Verified != n || !s.Phases.HoldCutShort || s.Phases.HoldSeconds >= 60 || !strings.Contains(r.stdout, "hold: cut short by a signal") {
		t.Errorf("exit %d, verified %d, phases %+v\n%s", r.code, s.Verified, s.Phases, r.stdout)
	}
	assertSysctls(t, before)
	assertNoWorkers(t, dir)
}

// Two runs at once would journal each other's sysctls, and the later to
// end would leave the earlier's settings on the host.
func TestSecondRunAndRestoreAreRefusedWhileARunHolds(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n, port = 20000, 19909
	cmd, o, e, dir := startHolding(t, n, port, "3s")
	second := run(t, "--conns", "1000", "--listen", "127.0.0.1:19910", "--no-bpf")
	want := fmt.Sprintf("another c10mprobe run or restore is using this host (pid %d)", cmd.Process.Pid)
	if second.code != 1 || !strings.Contains(second.stderr, want) || strings.Count(strings.TrimSpace(second.stderr), "\n") != 0 {
		t.Errorf("second run: exit %d, stderr %q; want 1 and one sentence with %q", second.code, second.stderr, want)
	}
	restore := exec.Command(toolBinary, "restore", dir)
	out, err := restore.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), want) {
		t.Errorf("restore during a run: %v, %q", err, out)
	}
	r := finish(t, cmd, o, e, dir)
	if r.code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	assertSysctls(t, before)
	assertNoWorkers(t, dir)
	// The lock went with the run.
	if again := run(t, "--conns", "1000", "--listen", "127.0.0.1:19910", "--no-bpf"); again.code != 0 {
		t.Errorf("a run after the first ended: exit %d\n%s", again.code, again.stderr)
	}
}

func TestSIGKILLedRunIsUndoneByRestore(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	tracefsBefore := tracefsMounted()
	cmd, o, e, dir := start(t, "--conns", "2000", "--listen", "127.0.0.1:19906", "--hold", "60s", "--port-range", "41000-59999",
		"--backend", "tracepoint", "--swap", "16MiB", "--mem-limit", "64MiB")
	for deadline := time.Now().Add(20 * time.Second); countOnPort(t, 19906) < 2000; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the run never held 2000 connections")
		}
	}
	if v, _ := sysctl.Read("net.ipv4.ip_local_port_range"); v != "41000 59999" {
		t.Errorf("port range during the run = %q", v)
	}
	if !tracefsMounted() {
		t.Error("the tracepoint backend runs without tracefs mounted")
	}
	if !swapActive(dir) {
		t.Error("--swap: the swapfile is not in /proc/swaps during the run")
	}
	// Workers are the OOM killer's first choice, so that the parent survives to restore.
	data, _ := os.ReadFile(filepath.Join(dir, "workers.pids"))
	worker := strings.Fields(string(data))[0]
	if adj, _ := os.ReadFile("/proc/" + worker + "/oom_score_adj"); strings.TrimSpace(string(adj)) != "1000" {
		t.Errorf("worker %s has oom_score_adj %q, want 1000", worker, adj)
	}
	cmd.Process.Kill()
	finish(t, cmd, o, e, dir)
	// PR_SET_PDEATHSIG takes the workers down with the parent.
	assertNoWorkers(t, dir)
	// explain says what the directory is, and how to undo the run.
	ex, err := exec.Command(toolBinary, "explain", dir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(ex), "did not finish") || !strings.Contains(string(ex), "c10mprobe restore "+dir) {
		t.Errorf("explain of a killed run: %v\n%s", err, ex)
	}
	out, err := exec.Command(toolBinary, "restore", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	assertSysctls(t, before)
	if tracefsMounted() != tracefsBefore {
		t.Errorf("tracefs mounted %v after restore, %v before the run", tracefsMounted(), tracefsBefore)
	}
	if swapActive(dir) {
		t.Error("the swapfile is still swapped on after restore")
	}
	if _, err := os.Stat(filepath.Join(dir, "swapfile")); !os.IsNotExist(err) {
		t.Error("the swapfile is still there after restore")
	}
	data, _ = os.ReadFile(filepath.Join(dir, "memcg.path"))
	if _, err := os.Stat(filepath.Join(dir, "memcg.path")); !os.IsNotExist(err) {
		t.Errorf("restore left the cgroup named in memcg.path: %s", data)
	}
}

// swapActive reports whether the run directory's swapfile is swapped on.
func swapActive(dir string) bool {
	data, _ := os.ReadFile("/proc/swaps")
	abs, _ := filepath.Abs(filepath.Join(dir, "swapfile"))
	return strings.Contains(string(data), abs)
}

func tracefsMounted() bool {
	data, _ := os.ReadFile("/proc/mounts")
	return strings.Contains(string(data), " /sys/kernel/tracing tracefs ")
}

func TestBadInputExits2AndChangesNothing(t *testing.T) {
	before := sysctls(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "summary.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--conns", "0"},
		{"run", "--conns", "-5"},
		{"run", "--conns", "many"},
		{"run"},
		{"run", "--conns", "10", "--listen", "nowhere"},
		{"run", "--conns", "10", "--src", "300.1.1.1"},
		{"run", "--conns", "10", "--src", "198.51.100.77"}, // TEST-NET-2: no host has it
		{"run", "--conns", "10", "--port-range", "5-2"},
		{"run", "--conns", "10", "--sysctl", "net.ipv4.no_such_sysctl=1"},
		{"run", "--conns", "10", "--worker-fds", "5"},
		{"run", "--conns", "10", "--inflight", "0"},
		{"run", "--conns", "10", "extra"},
		{"run", "--conns", "10", "--probe-cost", "--no-bpf"},
		{"run", "--conns", "10", "--out", full},
		{"run", "--conns", "10", "--out", filepath.Join(full, "summary.json", "run")},
		{"frobnicate"},
	} {
		dir := filepath.Join(t.TempDir(), "run")
		cmd := exec.Command(toolBinary, append(args, "--out", dir)...)
		if args[0] == "frobnicate" || slices.Contains(args, "--out") {
			cmd = exec.Command(toolBinary, args...)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
		if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; lines != 1 || stderr.Len() == 0 {
			t.Errorf("%v: want one sentence on stderr, got:\n%s", args, stderr.String())
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%v: created the run directory", args)
		}
	}
	if e, _ := os.ReadDir(full); len(e) != 1 {
		t.Errorf("a refused run wrote into the existing --out: %v", e)
	}
	assertSysctls(t, before)
}

func TestNonRootRunThatNeedsRootExits2(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--conns", "100000"}, "eBPF probes need root"},
		{[]string{"--conns", "100000", "--no-bpf"}, "which needs root"},
	} {
		dir := filepath.Join(t.TempDir(), "x")
		cmd := exec.Command(toolBinary, append([]string{"run", "--out", dir}, tc.args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("non-root %v: %v, stderr %q; want exit 2 saying %q", tc.args, err, stderr.String(), tc.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("non-root %v created the run directory", tc.args)
		}
	}
}

func TestMemoryReserveStopsTheRunAndVerifiesWhatIsHeld(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	// A reserve 96 MiB below what is spare now: the run's own sockets
	// (≈ 7 KiB of slab per connection) cross it after roughly 13,000.
	reserve := m.Spare() - 96<<20
	r := run(t, "--conns", "200000", "--listen", "127.0.0.1:19907", "--reserve", strconv.FormatUint(reserve, 10))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Limit == nil || s.Limit.Kind != "memory_reserve" || !strings.Contains(s.Limit.Detail, "below the reserve") {
		t.Fatalf("limit %+v, want memory_reserve", s.Limit)
	}
	if s.Established == 0 || s.Established >= 100000 || s.Verified != s.Established || s.Limit.At != s.Established {
		t.Errorf("established %d, verified %d, limit at %d", s.Established, s.Verified, s.Limit.At)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

func TestDoctorReportsWhatAttaches(t *testing.T) {
	needRoot(t)
	out, err := exec.Command(toolBinary, "doctor", "--json", "--conns", "50000").Output()
	if err != nil {
		t.Fatalf("doctor: %v", err)
	}
	var rep struct {
		Probes struct {
			BTF           bool              `json:"btf"`
			ProgramTiming string            `json:"program_timing"`
			Forced        map[string]string `json:"forced"`
			Auto          []struct {
				Hook     string            `json:"hook"`
				Backend  string            `json:"backend"`
				Failures map[string]string `json:"failures"`
			} `json:"auto"`
		} `json:"probes"`
		Preflight []struct {
			Limit string `json:"limit"`
		} `json:"preflight"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	// run must pick, for tcp_sendmsg, the first backend that works when forced.
	first := ""
	for _, b := range []string{"fentry", "kprobe", "raw_tracepoint", "tracepoint"} {
		if rep.Probes.Forced[b] == "ok" && first == "" {
			first = b
		}
		if rep.Probes.Forced[b] == "" {
			t.Errorf("no verdict for backend %s", b)
		}
	}
	if first == "" || len(rep.Probes.Auto) == 0 || rep.Probes.Auto[0].Hook != "tcp_sendmsg" || rep.Probes.Auto[0].Backend != first {
		t.Errorf("auto %+v, forced %v: want tcp_sendmsg on %s", rep.Probes.Auto, rep.Probes.Forced, first)
	}
	// Every backend tried before the chosen one says why it failed.
	for _, a := range rep.Probes.Auto {
		if a.Hook == "tcp_sendmsg" && first != "fentry" && a.Failures["fentry"] == "" {
			t.Errorf("tcp_sendmsg: no reason given for fentry: %v", a.Failures)
		}
	}
	if !rep.Probes.BTF || len(rep.Preflight) < 4 || rep.Probes.ProgramTiming != "ok" {
		t.Errorf("btf %v, program timing %q, %d preflight rows", rep.Probes.BTF, rep.Probes.ProgramTiming, len(rep.Preflight))
	}
	text, err := exec.Command(toolBinary, "doctor").Output()
	if err != nil || !strings.Contains(string(text), "What run will use") || !strings.Contains(string(text), "source ports") {
		t.Errorf("doctor text: %v\n%s", err, text)
	}
}

func TestExplanationOfA100kRunAndExplainWithoutRoot(t *testing.T) {
	needRoot(t)
	const n = 100000
	r := run(t, "--conns", strconv.Itoa(n), "--listen", "127.0.0.1:19908")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	assertSeriesEnds(t, r, n)
	s := readSummary(t, r)
	e := s.Explanation
	if e == nil {
		t.Fatal("summary.json has no explanation")
	}
	if e.UnexplainedFraction > 0.05 || e.UnexplainedFraction < -0.05 {
		t.Errorf("%.1f %% of %d bytes unexplained", 100*e.UnexplainedFraction, e.GrowthBytes)
	}
	var tcpLedger int64
	for _, l := range e.Ledger {
		if l.Kind == "slab" && l.Name == "TCP" {
			tcpLedger = l.BytesTotal
		}
	}
	// The ledger's TCP line comes from /proc/slabinfo; the probes count it too.
	probe := s.Kernel.Caches["TCP"].Bytes
	if d := float64(tcpLedger - probe); tcpLedger == 0 || d > 0.05*float64(tcpLedger) || -d > 0.05*float64(tcpLedger) {
		t.Errorf("TCP: ledger (slabinfo) %d bytes, probes %d", tcpLedger, probe)
	}
	if e.BindingLimit != "memory" || !strings.Contains(e.Verdict, "memory binds first") {
		t.Errorf("binding %q: %s", e.BindingLimit, e.Verdict)
	}
	if !strings.Contains(r.stdout, "Verdict: ") || !strings.Contains(r.stdout, "Limits, first to bind first") {
		t.Errorf("run did not print the explanation:\n%s", r.stdout)
	}

	// explain and predict need neither root nor eBPF: only the run directory.
	for d := r.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's levels are 0700
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd := exec.Command(toolBinary, "explain", "--json", r.dir)
	cmd.SysProcAttr = nobody
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("explain as nobody: %v", err)
	}
	var again struct {
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal(out, &again); err != nil || again.Verdict != e.Verdict {
		t.Errorf("explain gave %q, the run %q (%v)", again.Verdict, e.Verdict, err)
	}
	cmd = exec.Command(toolBinary, "predict", "--mem", "8GiB", "--from", r.dir, "--json")
	cmd.SysProcAttr = nobody
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("predict as nobody: %v", err)
	}
	var p struct {
		Connections uint64 `json:"connections"`
	}
	json.Unmarshal(out, &p)
	// 8 GiB less what this machine used at idle, at this run's cost per connection.
	perConn := float64(e.GrowthBytes) / float64(n)
	if p.Connections < uint64(6<<30/perConn) || p.Connections > uint64(8<<30/perConn) {
		t.Errorf("predict: %d connections for 8 GiB at %.0f B each", p.Connections, perConn)
	}
}

func TestMemoryCapIsReachedNamedAndRemoved(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	r := run(t, "--conns", "200000", "--listen", "127.0.0.1:19912", "--mem-limit", "256MiB", "--swap", "32MiB")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	m := s.Memcap
	if m == nil || s.Limit == nil || s.Limit.Kind != "memcap" || m.StoppedBy != "memcap" {
		t.Fatalf("limit %+v, memcap %+v: want memcap", s.Limit, m)
	}
	// Held within 10 % of the prediction printed before the first connection.
	if !strings.Contains(r.stderr, "predicted ≈") || m.PredictedConnections == 0 {
		t.Errorf("no prediction before the run:\n%s", r.stderr)
	}
	if off := float64(m.ActualConnections)/float64(m.PredictedConnections) - 1; off > 0.10 || off < -0.10 {
		t.Errorf("held %d, predicted %d", m.ActualConnections, m.PredictedConnections)
	}
	if s.Verified != m.ActualConnections || m.OOMKills != 0 || m.PeakUsageBytes < m.LimitBytes*9/10 {
		t.Errorf("verified %d of %d held, %d OOM kills, peak %d of %d", s.Verified, m.ActualConnections, m.OOMKills, m.PeakUsageBytes, m.LimitBytes)
	}
	if _, err := os.Stat(m.Cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind (%v)", m.Cgroup, err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "memcg.path")); !os.IsNotExist(err) {
		t.Error("memcg.path left in the run directory after the cgroup was removed")
	}
	if s.Swap == nil || s.Swap.Bytes != 32<<20 || swapActive(r.dir) {
		t.Errorf("--swap 32MiB: %+v, still active %v", s.Swap, swapActive(r.dir))
	}
	if _, err := os.Stat(filepath.Join(r.dir, "swapfile")); !os.IsNotExist(err) {
		t.Error("the swapfile was left behind")
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

func TestSecondSIGINTAbortsAndStillRestores(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "50000", "--listen", "127.0.0.1:19913", "--rate", "3000", "--hold", "30s")
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan result, 1)
	go func() { done <- finish(t, cmd, o, e, dir) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("a second SIGINT did not end the run within 15 s")
	}
	if r.code != 1 || !strings.Contains(r.stderr, "second signal") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// A file closed twice (once through a stray finalizer) shows up as EBADF on a later open.
	if strings.Contains(r.stderr, "bad file descriptor") {
		t.Errorf("EBADF during the abort:\n%s", r.stderr)
	}
	assertNoWorkers(t, dir)
	assertSysctls(t, before)
}
