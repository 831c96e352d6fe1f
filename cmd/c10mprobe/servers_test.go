package main

// Servers people run, brought to c10mprobe with --target: each started by
// c10mprobe itself (--server-cmd) under an RLIMIT_NOFILE below the run's
// connection count, so that the server's own limit binds, and the verdict
// must name it rather than the symptoms it causes (connections that wait
// in the accept queue unanswered).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
)

const (
	serverNoFile = 1024 // the server's RLIMIT_NOFILE: binds first
	serverConns  = 1500
)

// probeServer runs c10mprobe against serverCmd (which must listen on
// 127.0.0.1:port) under RLIMIT_NOFILE serverNoFile, and checks what every
// brought server must show: the server's fd limit named as the binding
// limit at what it held, its costs measured, and the server gone after.
func probeServer(t *testing.T, port int, exchange, serverCmd string) record.Summary {
	t.Helper()
	before := sysctls(t)
	// This test process is one of "all other processes" whose anonymous
	// memory the ledger check below holds steady: hand its freed heap back
	// now, not to the scavenger during the run (AnonPages fell by 79 MiB
	// there once, after the heavier tests before it).
	debug.FreeOSMemory()
	target := fmt.Sprintf("127.0.0.1:%d", port)
	r := run(t, "--conns", fmt.Sprint(serverConns), "--target", target, "--exchange", exchange, "--timeout", "3s",
		"--server-cmd", fmt.Sprintf("ulimit -n %d; exec %s", serverNoFile, serverCmd))
	if r.code != exitNotAll {
		t.Fatalf("exit %d, want %d (the server's fds cannot hold %d)\nstderr:\n%s", r.code, exitNotAll, serverConns, r.stderr)
	}
	s := readSummary(t, r)
	sv := s.Result.Server
	if !sv.External || sv.Exchange != exchange || len(sv.Pids) == 0 || sv.Peak == nil || sv.Idle == nil {
		t.Fatalf("summary server = %+v, want an external server with its pids and samples", sv)
	}
	// The kernel's account of the server's limit, set by the test.
	if sv.RlimitNoFile != serverNoFile {
		t.Errorf("server rlimit_nofile %d, want %d (ulimit -n)", sv.RlimitNoFile, serverNoFile)
	}
	l := s.Result.Limit
	if l == nil || l.Kind != limit.ServerFds {
		t.Fatalf("limit %+v, want %s\nstderr:\n%s", l, limit.ServerFds, r.stderr)
	}
	// What it held is its limit less its own fds (listener, epoll, stdio,
	// a JVM's jars): a few dozen at most.
	if l.At > serverNoFile || l.At < serverNoFile-100 || s.Result.Verified != l.At {
		t.Errorf("bound at %d with %d verified, want both equal and within 100 below %d", l.At, s.Result.Verified, serverNoFile)
	}
	if sv.Peak.FDs+2 < serverNoFile {
		t.Errorf("the server's fullest process held %d fds at the peak, below its limit %d", sv.Peak.FDs, serverNoFile)
	}
	// sock_diag saw every connection the clients opened on the server's port.
	if s.Result.ServerSockets != s.Result.Established || s.Result.Established != serverConns {
		t.Errorf("%d established, %d sockets on the server's port (sock_diag), want %d of each", s.Result.Established, s.Result.ServerSockets, serverConns)
	}
	e := s.Explanation
	if e == nil || e.BindingLimit != "server fds" || !strings.Contains(e.Verdict, "RLIMIT_NOFILE of 1,024") {
		t.Errorf("explanation binds %q: %q; want the server's RLIMIT_NOFILE of 1,024", e.BindingLimit, e.Verdict)
	}
	if sv.PssPerConnection <= 0 || sv.Held != l.At {
		t.Errorf("server PSS per connection %.0f B over %d held, want > 0 over %d", sv.PssPerConnection, sv.Held, l.At)
	}
	// The server's anonymous memory (its smaps_rollup) is part of the host's
	// (/proc/meminfo AnonPages): the rest of that growth cannot be much
	// below zero.
	lines := map[string]int64{}
	for _, ln := range e.Ledger {
		lines[ln.Name] = ln.BytesTotal
	}
	if server, rest := lines["the server's processes"], lines["anonymous memory, all other processes"]; server <= 0 || rest < -server/20-8<<20 {
		t.Errorf("ledger: the server's processes %d B, all other anonymous memory %d B: smaps_rollup and meminfo disagree", server, rest)
	}
	// Both ends' sockets are kernel memory: two socks and their files.
	if e.KernelPerConnection < 4096 {
		t.Errorf("kernel memory %.0f B per connection, want ≥ 4 KiB", e.KernelPerConnection)
	}
	assertServerSaid(t, r.dir, s)
	assertServerGone(t, r.dir, sv.Pids, port)
	assertSysctls(t, before)
	return s
}

// assertServerSaid: each server logs its failed accept() (EMFILE) in its
// own words; the run quotes the commonest shape with its count, which is
// the log's own count of lines that say "too many open files".
func assertServerSaid(t *testing.T, dir string, s record.Summary) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, rundir.ServerLog))
	if err != nil {
		t.Fatal(err)
	}
	var emfile uint64
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(strings.ToLower(line), "too many open files") {
			emfile++
		}
	}
	l := s.Result.Server.Log
	if l == nil || len(l.Commonest) == 0 || emfile == 0 {
		t.Fatalf("server log digest %+v, %d lines of its log say too many open files; want them quoted", l, emfile)
	}
	top := l.Commonest[0]
	if !strings.Contains(strings.ToLower(top.Text), "too many open files") || top.Count != emfile {
		t.Errorf("commonest error line %+v; want the %d lines that say too many open files", top, emfile)
	}
	if e := s.Explanation; e == nil || !strings.Contains(e.Verdict, fmt.Sprintf("%s× “%s”", units.Count(top.Count), top.Text)) {
		t.Errorf("the verdict does not quote the server's log: %+v", e)
	}
}

// assertServerGone checks that no process of the server lives, that its
// port is free and that the run directory records nothing left behind.
func assertServerGone(t *testing.T, dir string, pids []int, port int) {
	t.Helper()
	// A zombie is dead: an orphan waits a moment for init to reap it.
	if alive, _ := procfs.Tree(pids); len(alive) > 0 {
		t.Errorf("server processes %v still alive after the run", alive)
	}
	if out, _ := exec.Command("ss", "-Htln", fmt.Sprintf("sport = :%d", port)).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("something still listens on %d after the run: %s", port, out)
	}
	if _, err := os.Stat(filepath.Join(dir, rundir.ServerGroup)); err == nil {
		t.Errorf("%s left in the run directory", rundir.ServerGroup)
	}
	if left := runner.Leftovers(dir); len(left) > 0 {
		t.Errorf("leftovers after the run: %v", left)
	}
}

func need(t *testing.T, tool, why string) string {
	t.Helper()
	return testenv.NeedTool(t, tool, why)
}

func TestProbeGoServer(t *testing.T) {
	needRoot(t)
	bin := prebuilt("goecho")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "goecho")
		if out, err := exec.Command("go", "build", "-o", bin, "./testdata/servers/goecho").CombinedOutput(); err != nil {
			t.Fatalf("building the Go server: %v\n%s", err, out)
		}
	}
	s := probeServer(t, 19971, "echo", bin+" 127.0.0.1:19971")
	// A goroutine a connection, not a thread.
	if tpc := s.Result.Server.ThreadsPerConnection; tpc > 0.05 {
		t.Errorf("Go server: %.2f threads a connection, want ≈ 0 (goroutines)", tpc)
	}
}

// javaEchoServer compiles the thread-per-connection EchoServer.java where
// nobody can read it too (t.TempDir's parent is root's alone), and returns
// the java binary and the classes' directory.
func javaEchoServer(t *testing.T) (java, classes string) {
	t.Helper()
	need(t, "javac", "the JDK: default-jdk-headless")
	java = need(t, "java", "the JDK: default-jdk-headless")
	classes, err := os.MkdirTemp("", "c10mprobe-java")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(classes) })
	if out, err := exec.Command("javac", "-d", classes, "testdata/servers/EchoServer.java").CombinedOutput(); err != nil {
		t.Fatalf("compiling the Java server: %v\n%s", err, out)
	}
	os.Chmod(classes, 0o755)
	return java, classes
}

func TestProbeJavaServer(t *testing.T) {
	needRoot(t)
	java, classes := javaEchoServer(t)
	s := probeServer(t, 19972, "echo", fmt.Sprintf("%s -Xmx256m -cp %s EchoServer 19972", java, classes))
	// A thread a connection: the JVM's own threads are there idle.
	if tpc := s.Result.Server.ThreadsPerConnection; tpc < 0.9 || tpc > 1.1 {
		t.Errorf("Java server: %.2f threads a connection, want ≈ 1", tpc)
	}
}

func TestProbeAsyncioServer(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	s := probeServer(t, 19973, "echo", fmt.Sprintf("%s testdata/servers/asyncio_echo.py 127.0.0.1 19973 4096", py))
	if tpc := s.Result.Server.ThreadsPerConnection; tpc > 0.05 {
		t.Errorf("asyncio server: %.2f threads a connection, want ≈ 0 (one event loop)", tpc)
	}
}

// nginxCmd is the command that runs nginx as testdata/servers/nginx.conf
// sets it up, on port with workerConnections: -e, because nginx opens its
// default error log before reading the config; its log goes to stderr,
// which the run keeps (server.log).
func nginxCmd(t *testing.T, port, workerConnections int) string {
	t.Helper()
	nginx := need(t, "nginx", "nginx-light")
	prefix := t.TempDir()
	conf, err := os.ReadFile("testdata/servers/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.NewReplacer("PREFIX", prefix, "PORT", fmt.Sprint(port),
		"worker_connections 65536", fmt.Sprintf("worker_connections %d", workerConnections)).Replace(string(conf)))
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s -e stderr -c %s", nginx, path)
}

func TestProbeNginx(t *testing.T) {
	needRoot(t)
	s := probeServer(t, 19974, "none", nginxCmd(t, 19974, 65536))
	// The connections it could not take waited in its accept queue, where
	// the verification does not count them.
	if q := s.Result.Server.AcceptQueuePeak; int(q)+int(s.Result.Verified) != serverConns {
		t.Errorf("nginx: %d verified + %d in its accept queue, want %d", s.Result.Verified, q, serverConns)
	}
}

// TestTargetKilledRunServerRestored: a run killed with SIGKILL leaves its
// --server-cmd running (only the shell's direct child gets PDEATHSIG);
// restore stops the whole group.
func TestTargetKilledRunServerRestored(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	// A server that forks: its child is what PDEATHSIG does not reach.
	cmd, o, e, dir := start(t, "--conns", "2000", "--target", "127.0.0.1:19975", "--no-bpf", "--hold", "60s", "--exchange", "echo",
		"--server-cmd", fmt.Sprintf("%s testdata/servers/asyncio_echo.py 127.0.0.1 19975 & wait", py))
	deadline := time.Now().Add(30 * time.Second)
	for ssCount(t, 19975) < 2000 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	data, err := os.ReadFile(filepath.Join(dir, rundir.ServerGroup))
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("no %s while the run holds: %v", rundir.ServerGroup, err)
	}
	var pgid int
	fmt.Sscanf(string(data), "%d", &pgid)
	cmd.Process.Kill()
	finish(t, cmd, o, e, dir)
	if len(runner.Leftovers(dir)) == 0 {
		t.Fatalf("a killed run's server should be a leftover (pgid %d)", pgid)
	}
	out, err := exec.Command(toolBinary, "restore", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("process group %d", pgid)) {
		t.Errorf("restore did not say it stopped the server's group %d:\n%s", pgid, out)
	}
	if pids, _ := procfs.Tree([]int{pgid}); len(pids) > 0 {
		t.Errorf("server processes %v alive after restore", pids)
	}
	// The run's client ends went to TIME_WAIT when the server closed them:
	// restore frees those, the run's own, and leaves the next test none.
	if tw := timeWaitOn(t, 19975); tw != 0 {
		t.Errorf("%d sockets in TIME_WAIT on 19975 after restore:\n%s", tw, out)
	}
	assertServerGone(t, dir, nil, 19975)
}

// TestTargetBadInput: what cannot run is refused with exit 2 before
// anything on the host changes.
func TestTargetBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "192.0.2.1:80"}, "not an address of this host"},
		{[]string{"--target", "127.0.0.1:19976"}, "nothing listens there"},
		{[]string{"--target", "127.0.0.1:19976", "--exchange", "numbered", "--server-cmd", "true"}, "built-in server's protocol"},
		{[]string{"--exchange", "echo"}, "a server you bring"},
		{[]string{"--exchange", "bogus"}, "numbered, echo or none"},
		{[]string{"--server-cmd", "true"}, "give --target"},
		{[]string{"--target", "127.0.0.1:19976", "--server-cmd", "true", "--server-pid", "1"}, "give one of them"},
		{[]string{"--target", "127.0.0.1:19976", "--exchange", "none", "--payload", "1KiB", "--server-cmd", "true"}, "--payload needs an exchange"},
		{[]string{"--target", "127.0.0.1:19976", "--listen", "127.0.0.1:19977"}, "give one of them"},
	} {
		r := run(t, append([]string{"--conns", "10", "--no-bpf"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
		if _, err := os.Stat(r.dir); err == nil {
			t.Errorf("%v: the run directory was made for a refused run", tc.args)
		}
	}
}

// TestTargetServerNeverListens: a --server-cmd that exits without
// listening is an error that shows its output, and leaves nothing.
func TestTargetServerNeverListens(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	r := run(t, "--conns", "10", "--no-bpf", "--target", "127.0.0.1:19978", "--server-cmd", "echo cannot bind >&2; exit 3")
	if r.code != exitNotAll || !strings.Contains(r.stderr, "exited") || !strings.Contains(r.stderr, "cannot bind") {
		t.Errorf("exit %d, stderr %q; want %d, the exit and the server's last output", r.code, r.stderr, exitNotAll)
	}
	assertServerGone(t, r.dir, nil, 19978)
	assertSysctls(t, before)
}

// TestProbeServerBacklog: a server that never accepts fills its accept
// queue; the run stalls, and the verdict names the server's backlog, not
// the stall.
func TestProbeServerBacklog(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	before := sysctls(t)
	r := run(t, "--conns", "500", "--target", "127.0.0.1:19979", "--exchange", "none", "--timeout", "2s", "--no-bpf",
		"--server-cmd", py+" testdata/servers/never_accepts.py 127.0.0.1 19979 64")
	s := readSummary(t, r)
	if r.code != exitNotAll || s.Result.Limit == nil || s.Result.Limit.Kind != limit.ServerBacklog {
		t.Fatalf("exit %d, limit %+v; want %d and %s\nstderr:\n%s", r.code, s.Result.Limit, exitNotAll, limit.ServerBacklog, r.stderr)
	}
	// listen(64) holds 65 in the queue (sk_acceptq_is_full is ">"), all
	// waiting, none accepted: nothing is verified.
	if sv := s.Result.Server; sv.Backlog != 64 || sv.AcceptQueuePeak < 64 || s.Result.Verified != 0 {
		t.Errorf("backlog %d, %d waiting at the peak, %d verified; want 64, ≥ 64, 0", sv.Backlog, sv.AcceptQueuePeak, s.Result.Verified)
	}
	if e := s.Explanation; e == nil || e.BindingLimit != "server backlog" {
		t.Errorf("explanation binds %+v, want server backlog", e)
	}
	assertServerGone(t, r.dir, s.Result.Server.Pids, 19979)
	assertSysctls(t, before)
}

// TestProbeServerThreads: a thread-per-connection JVM run as an
// unprivileged user under RLIMIT_NPROC 600 (which counts every thread of
// its user) cannot start a thread for every connection; the verdict names
// the server's threads. Root would be exempt from RLIMIT_NPROC.
func TestProbeServerThreads(t *testing.T) {
	needRoot(t)
	java, classes := javaEchoServer(t)
	setpriv := need(t, "setpriv", "util-linux")
	prlimit := need(t, "prlimit", "util-linux")
	before := sysctls(t)
	r := run(t, "--conns", "1500", "--target", "127.0.0.1:19980", "--exchange", "echo", "--timeout", "3s", "--no-bpf",
		"--server-cmd", fmt.Sprintf("exec %s --nproc=600 %s --reuid nobody --regid nogroup --clear-groups %s -Xmx128m -Xss256k -cp %s EchoServer 19980", prlimit, setpriv, java, classes))
	s := readSummary(t, r)
	if r.code != exitNotAll || s.Result.Limit == nil || s.Result.Limit.Kind != limit.ServerThreads {
		t.Fatalf("exit %d, limit %+v; want %d and %s\nstderr:\n%s\nserver:\n%s", r.code, s.Result.Limit, exitNotAll, limit.ServerThreads, r.stderr, serverLog(r.dir))
	}
	sv := s.Result.Server
	if sv.RlimitNProc != 600 || sv.Peak.Threads > 600 || sv.Peak.Threads < 550 {
		t.Errorf("RLIMIT_NPROC %d, %d threads at the peak; want 600 and just under it", sv.RlimitNProc, sv.Peak.Threads)
	}
	if v := s.Result.Verified; v+sv.Idle.Threads > 600 || v < 500 {
		t.Errorf("%d verified with %d threads idle; want what 600 threads allow", v, sv.Idle.Threads)
	}
	if e := s.Explanation; e == nil || e.BindingLimit != "server threads" || !strings.Contains(e.Verdict, "RLIMIT_NPROC of 600") {
		t.Errorf("explanation %q: %q; want server threads and its RLIMIT_NPROC of 600", e.BindingLimit, e.Verdict)
	}
	assertServerGone(t, r.dir, sv.Pids, 19980)
	assertSysctls(t, before)
}

func serverLog(dir string) string {
	data, _ := os.ReadFile(filepath.Join(dir, rundir.ServerLog))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// TestNginxWorkerConnectionsAreQuoted: nginx with worker_connections 512
// and fds for 4,096 closes what it cannot serve; the verdict says it
// closed them and quotes nginx's own reason, not its fds.
func TestNginxWorkerConnectionsAreQuoted(t *testing.T) {
	needRoot(t)
	const conns = 1000
	r := run(t, "--conns", fmt.Sprint(conns), "--target", "127.0.0.1:19979", "--exchange", "none", "--timeout", "3s", "--no-bpf",
		"--server-cmd", "ulimit -n 4096; exec "+nginxCmd(t, 19979, 512))
	s := readSummary(t, r)
	if r.code != exitNotAll || s.Verified > 512 || s.Verified+s.Failed["eof"] != conns {
		t.Fatalf("exit %d, verified %d, failed %v; want at most 512 held and the rest closed (EOF)\n%s", r.code, s.Verified, s.Failed, r.stderr)
	}
	e := s.Explanation
	if e == nil || !strings.HasPrefix(e.Verdict, fmt.Sprintf("%s verified of 1,000: the server you brought closed %s of the 1,000 connections", units.Count(s.Verified), units.Count(s.Failed["eof"]))) ||
		!strings.Contains(e.Verdict, "512 worker_connections are not enough") {
		t.Errorf("verdict %+v", e)
	}
}
