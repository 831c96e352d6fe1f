package main

// Bad input, refusals and the host left as found.

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
)

// hostState is everything a run may change on the host, as text.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, k := range append(watched, "vm.nr_hugepages") {
		v, _ := sysctl.Read(k)
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	swaps, _ := os.ReadFile("/proc/swaps")
	b.Write(swaps)
	fmt.Fprintf(&b, "tracefs %v\n", tracefsMounted())
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.Contains(d.Name(), "c10mprobe-") {
				fmt.Fprintln(&b, path)
			}
			if err == nil && d.IsDir() && strings.Count(strings.TrimPrefix(path, root), "/") > 3 {
				return filepath.SkipDir
			}
			return nil
		})
	}
	return b.String()
}

func TestBadInputExits2AndChangesNothing(t *testing.T) {
	before := hostState(t)
	// Too many for this host: a connection costs several KiB of slab, so a
	// connection for every 1,000 bytes of memory is several times it.
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	tooMany := fmt.Sprint(m.MemTotal / 1000)
	full := t.TempDir()
	// A port another listener holds.
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
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
		{"run", "--conns", "10", "--listen", "198.51.100.7:9999"},
		{"run", "--conns", "10", "--listen", taken.Addr().String()},
		{"run", "--conns", "10", "--port-range", "80-90"},
		{"run", "--conns", "10", "--sysctl", "net.core.somaxconn=garbage"},
		{"run", "--conns", "10", "--sysctl", "net.ipv4.tcp_rmem=4096 4096"},
		{"run", "--conns", "10", "--rate", "NaN"},
		{"run", "--conns", "10", "--rate", "Inf"},
		{"run", "--conns", "10", "--worker-fds", "2000000"},
		{"run", "--conns", "10", "--worker-fds", "18446744073709551615"},
		{"run", "--conns", "10", "--swap", "9000000TiB"},
		{"run", "--conns", "10", "--swap", "100TiB"},
		{"run", "--conns", "10", "--reserve", "100TiB"},
		{"run", "--conns", "10", "--hold", "-1s"},
		{"run", "--conns", "10", "--max-workers", "-5"},
		{"run", "--conns", "10", "--mem-limit", "0.5"},
		{"run", "--conns", "10", "--mem-limit", "0"},
		{"run", "--conns", "1,0,0"},
		{"run", "--conns", "10", "--src", "127.0.0.2,127.0.0.2"},
		{"run", "--conns", "10", "--src", "0.0.0.0"},
		{"run", "--conns", "1e9"},
		{"run", "--conns", tooMany}, // without --force
		{"run", "--conns", "10", "--out", "/proc/c10mprobe-run"},
		{"run", "--conns", "10", "--out", full},
		{"run", "--conns", "10", "--out", filepath.Join(full, "summary.json", "run")},
		{"predict", "--mem", "0"},
		{"predict", "--from", full, "--family", "inet6"},
		{"predict", "--mem", "8GiB", "--ballast", "3GiB"}, // no --machine-mem run whose ballast it replaces
		{"frobnicate"},
		{"export", full, "--format", ""},
		{"explain", full}, // summary.json holds no run: the same for every command
		{"export", full},
	} {
		dir := filepath.Join(t.TempDir(), "run")
		cmd := exec.Command(toolBinary, append(args, "--out", dir)...)
		if args[0] != "run" || slices.Contains(args, "--out") {
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
	if after := hostState(t); after != before {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
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

// Two runs at once would journal each other's sysctls, and the later to
// end would leave the earlier's settings on the host.
func TestSecondRunAndRestoreAreRefusedWhileARunHolds(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n, port = 20000, 19909
	cmd, o, e, dir := startHolding(t, n, port, "3s")
	second := run(t, "--conns", "1000", "--listen", "127.0.0.1:19910", "--no-bpf")
	want := fmt.Sprintf("another c10mprobe run or restore is using this host (pid %d)", cmd.Process.Pid)
	// Bad input: exit 2, one sentence, before anything on the host changes.
	if second.code != 2 || !strings.Contains(second.stderr, want) || strings.Count(strings.TrimSpace(second.stderr), "\n") != 0 {
		t.Errorf("second run: exit %d, stderr %q; want 2 and one sentence with %q", second.code, second.stderr, want)
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

// Both ends the run's: every socket closes in TCP repair mode and sends
// nothing. The kernel's own counters say so: no RST and no FIN segments
// the size of the run, and no TIME_WAIT left.
func TestCloseSendsNothingWhenBothEndsAreTheRuns(t *testing.T) {
	needRoot(t)
	const n, port = 10000, 19966
	tcp := func() map[string]int64 {
		m, err := procfs.ReadKeyed("/proc/net/snmp")
		if err != nil {
			t.Fatal(err)
		}
		return m["Tcp"]
	}
	cmd, o, e, dir := start(t, "--conns", fmt.Sprint(n), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--no-bpf", "--hold", "3s")
	for deadline := time.Now().Add(30 * time.Second); countOnPort(t, port) < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // the exchange of 10,000 takes a tenth of that
	before := tcp()         // in the hold: every connection through its exchange
	r := finish(t, cmd, o, e, dir)
	after := tcp()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	// A few from the rest of the machine; an RST a connection would be 10,000.
	if rst, segs := after["OutRsts"]-before["OutRsts"], after["OutSegs"]-before["OutSegs"]; rst > n/20 || segs > n/5 {
		t.Errorf("closing %d connections sent %d RSTs and %d segments", n, rst, segs)
	}
	if tw := timeWaitOn(t, port); tw != 0 {
		t.Errorf("%d TIME_WAIT sockets on port %d after the run", tw, port)
	}
	assertNoWorkers(t, r.dir)
}
