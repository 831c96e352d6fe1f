package main

// The harness of the root tests: real runs of the built binary, checked
// against the kernel's own accounts (ss, sock_diag, /proc/sys) rather than
// the tool's counters.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/hostlock"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
)

var toolBinary string

func TestMain(m *testing.M) {
	// One measuring test binary at a time: each package's slab and socket
	// counts are off while another's tests open or close thousands of
	// sockets, and go test runs packages at once unless given -p 1.
	hostlock.Wait("c10mprobe-tests")
	if dir := os.Getenv(prebuiltEnv); dir != "" {
		// The VM tier's guest has no Go toolchain: it is given the binaries.
		toolBinary = filepath.Join(dir, "c10mprobe")
		os.Exit(m.Run())
	}
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

// prebuiltEnv names a directory holding c10mprobe, c10mprobe-worker and
// the test servers (goecho) already built, as the VM tier provides them.
const prebuiltEnv = "C10MPROBE_TEST_BIN_DIR"

// prebuilt returns the path of a program built by the caller of the tests,
// or "" when the tests build their own.
func prebuilt(name string) string {
	if dir := os.Getenv(prebuiltEnv); dir != "" {
		return filepath.Join(dir, name)
	}
	return ""
}

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "opens tens of thousands of sockets and changes sysctls")
}

// watched are the sysctls a run may change; every test checks they come back.
var watched = []string{"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "kernel.bpf_stats_enabled", "fs.epoll.max_user_watches", "net.ipv4.tcp_mem",
	"net.core.netdev_max_backlog"}

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

// output is a command's stdout or stderr, readable while the command runs.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor returns once the output holds s, or fails the test after timeout.
func (o *output) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(o.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%q did not appear within %s:\n%s", s, timeout, o.String())
		}
	}
}

func start(t *testing.T, args ...string) (*exec.Cmd, *output, *output, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(toolBinary, append([]string{"run", "--out", dir}, args...)...)
	stdout, stderr := &output{}, &output{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	restoreIfKilled(t, dir)
	return cmd, stdout, stderr, dir
}

// restoreIfKilled puts the host back after the test if the run in dir was
// killed and did not (a test failing half-way): every later run would
// refuse the host.
func restoreIfKilled(t *testing.T, dir string) {
	t.Cleanup(func() {
		if slices.Contains(host.Killed(), dir) {
			out, _ := exec.Command(toolBinary, "restore", dir).CombinedOutput()
			t.Logf("restored the killed run in %s: %s", dir, out)
		}
	})
}

func finish(t *testing.T, cmd *exec.Cmd, stdout, stderr *output, dir string) result {
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

func readSummary(t testing.TB, r result) record.Summary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, rundir.Summary))
	if err != nil {
		t.Fatalf("reading summary.json: %v\nstderr:\n%s", err, r.stderr)
	}
	var s record.Summary
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

// startHolding starts a run without probes and returns once the kernel
// shows all n connections on the port, the run then holding them.
func startHolding(t *testing.T, n, port int, hold string, args ...string) (*exec.Cmd, *output, *output, string) {
	t.Helper()
	cmd, o, e, dir := start(t, append([]string{"--conns", strconv.Itoa(n), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--no-bpf", "--hold", hold}, args...)...)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ssCount(t, port) < n; time.Sleep(100 * time.Millisecond) {
	}
	return cmd, o, e, dir
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

// foreignTimeWait leaves n client sockets of another program in TIME_WAIT
// on 127.0.3.1, each bound explicitly (a Go dialer given a local address
// calls bind(), as a JVM's java.net.Socket given one does): connect()
// skips their ports on every address for 60 s. They are killed with
// sock_diag (ss -K) when the test ends. It returns how many ss shows in
// TIME_WAIT (a few percent fewer than n: loopback's tcp_tw_reuse recycles
// some).
func foreignTimeWait(tb testing.TB, n int) int {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:19961")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	killTimeWait := func() {
		if out, err := exec.Command("ss", "-K", "state", "time-wait", "src", "127.0.3.1").CombinedOutput(); err != nil {
			tb.Errorf("ss -K: %v\n%s", err, out)
		}
	}
	tb.Cleanup(killTimeWait)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// The client closes first; the server end follows on EOF.
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, 1)}}
	// Both ends in this process: a batch within its fds, whatever this
	// host's RLIMIT_NOFILE (Go raised the soft limit to the hard one).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	batch := min(4000, int(lim.Cur-256)/2)
	// Dialed by several goroutines: on a slow machine one dialer alone takes
	// longer than TIME_WAIT lasts.
	const dialers = 8
	for done := 0; done < n; done += batch {
		conns := make([]net.Conn, min(batch, n-done))
		errs := make(chan error, dialers)
		var wg sync.WaitGroup
		for g := range dialers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(conns); i += dialers {
					c, err := d.Dial("tcp4", "127.0.0.1:19961")
					if err != nil {
						errs <- err
						return
					}
					conns[i] = c
				}
			}()
		}
		wg.Wait()
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		close(errs)
		if err := <-errs; err != nil {
			tb.Fatalf("dialing the foreign sockets: %v", err)
		}
	}
	// Wait until the kernel shows them in TIME_WAIT: as many as its table
	// takes (net.ipv4.tcp_max_tw_buckets, half the established hash's
	// buckets by default: smaller than n on a small machine).
	want := n
	if v, err := sysctl.Read("net.ipv4.tcp_max_tw_buckets"); err == nil {
		if b, err := strconv.Atoi(v); err == nil {
			want = min(n, b)
		}
	}
	// On a slow machine (a VM under TCG) dialing them takes longer than
	// TIME_WAIT lasts (60 s), and the first expire before the last close:
	// then what stays once the count stops growing is what the test has.
	last, grew := 0, time.Now()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("ss", "-Htan", "state", "time-wait", "src", "127.0.3.1").Output()
		got := bytes.Count(out, []byte("\n"))
		if got > last {
			last, grew = got, time.Now()
		}
		switch {
		case got >= want*9/10:
			return got
		case time.Since(grew) > 2*time.Second && got >= want/10:
			tb.Logf("%d of %d foreign sockets in TIME_WAIT: the first expired before the last were made", got, n)
			return got
		case time.Now().After(deadline):
			tb.Fatalf("%d of %d foreign sockets in TIME_WAIT (tcp_max_tw_buckets lets %d in)", got, n, want)
		}
	}
}

// portsPerAddress is this host's ip_local_port_range, counted.
func portsPerAddress(t *testing.T) int {
	t.Helper()
	lo, hi, err := runner.ReadPortRange()
	if err != nil {
		t.Fatal(err)
	}
	return hi - lo + 1
}

// doctor is what doctor --json says of the probes on this kernel.
func doctor(t *testing.T) bpf.Report {
	t.Helper()
	out, err := exec.Command(toolBinary, "doctor", "--json").Output()
	if err != nil {
		t.Fatalf("doctor --json: %v", err)
	}
	var d struct {
		Probes bpf.Report `json:"probes"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("doctor --json: %v", err)
	}
	return d.Probes
}

// doctorBackend is the backend a run uses for hook on this kernel.
func doctorBackend(t *testing.T, hook string) bpf.Backend {
	t.Helper()
	for _, a := range doctor(t).Auto {
		if a.Hook == hook {
			return a.Backend
		}
	}
	t.Fatalf("doctor lists no backend for %s", hook)
	return ""
}
