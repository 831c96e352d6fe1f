package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// headroomJSON runs `headroom` with args and decodes its --json output.
func headroomJSON(t *testing.T, args ...string) (analysis.Headroom, map[string]any) {
	t.Helper()
	out, err := exec.Command(toolBinary, append([]string{"headroom", "--json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("headroom %v: %v\n%s", args, err, out)
	}
	var v struct {
		Headroom analysis.Headroom `json:"headroom"`
		Sample   map[string]any    `json:"sample"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("headroom --json: %v\n%s", err, out)
	}
	return v.Headroom, v.Sample
}

func headroomLimit(h analysis.Headroom, name string) *analysis.HeadroomLimit {
	for i := range h.Limits {
		if h.Limits[i].Name == name {
			return &h.Limits[i]
		}
	}
	return nil
}

func TestHeadroomBadInput(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--port PORT or --pid PID"},
		{[]string{"--port", "0"}, "not a TCP port"},
		{[]string{"--port", "70000"}, "not a TCP port"},
		{[]string{"--port", fmt.Sprint(free)}, "nothing listens on it"},
		{[]string{"--pid", "999999999"}, "no such process"},
		{[]string{"--port", "22", "extra"}, "unexpected argument"},
	} {
		out, err := exec.Command(toolBinary, append([]string{"headroom"}, tc.args...)...).CombinedOutput()
		ee, _ := err.(*exec.ExitError)
		if ee == nil || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
			t.Errorf("headroom %v: %v, %q; want exit 2 and one line with %q", tc.args, err, out, tc.want)
		}
	}
}

// A server in a network namespace of its own (a container's), given by
// pid, is read from inside it: its sockets, and its namespace's port range,
// which there binds first, where connect() then really fails.
func TestHeadroomReadsAServerInItsNetworkNamespace(t *testing.T) {
	needRoot(t)
	const port, now = 19982, 300
	pid := netnsServer(t, port, `sysctl -w net.ipv4.ip_local_port_range="40000 40999" >/dev/null`, nil)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 8192, Max: 8192}, nil); err != nil {
		t.Fatal(err)
	}
	dialIn(t, pid, port, now)
	h, sample := headroomJSON(t, "--pid", fmt.Sprint(pid))
	net, _ := sample["net"].(map[string]any)
	if h.Now != now || sample["other_netns"] != true || net["port_lo"].(float64) != 40000 || net["port_hi"].(float64) != 40999 {
		t.Fatalf("%d connections, netns %v, net %v: want %d, read inside the namespace (ports 40000–40999)", h.Now, sample["netns"], net, now)
	}
	ports := headroomLimit(h, "ephemeral ports")
	if h.Binding != "ephemeral ports" || ports == nil || !strings.Contains(h.Verdict, "in network namespace net:[") {
		t.Fatalf("binding %q, ports %+v, verdict %q; want the namespace's port range first", h.Binding, ports, h.Verdict)
	}
	more, err := dialIn(t, pid, port, -1)
	if !errors.Is(err, syscall.EADDRNOTAVAIL) || int64(more) != *ports.More {
		t.Errorf("connect() took %d more, then %v; headroom said %d more, then EADDRNOTAVAIL", more, err, *ports.More)
	}
	// From this namespace the port is not found, and the message says why.
	msg, _ := exec.Command(toolBinary, "headroom", "--port", fmt.Sprint(port)).CombinedOutput()
	if !strings.Contains(string(msg), "found by its --pid") {
		t.Errorf("--port from outside: %s", msg)
	}
}

// A server in a memory cgroup and a network namespace of its own, a pod's
// lot, is bound by its cgroup's memory limit where that comes first; its
// connections are counted from inside its namespace, and the cgroup's
// figures are the cgroup's files'.
func TestHeadroomOfAServerInItsCgroupAndNamespace(t *testing.T) {
	needRoot(t)
	place, err := host.FindMemcgParent()
	if err != nil {
		testenv.Skip(t, testenv.KernelLacks, "no memory cgroup: %v", err)
	}
	const port, now = 19984, 300
	// The Go server charges ≈ 3 MiB idle; 16 MiB leaves room for a
	// thousand or two connections, well before its fds or ports.
	limit := uint64(16 << 20)
	cg, err := host.NewMemcg(place, filepath.Join(place.Parent, fmt.Sprintf("c10mprobe-headroom-test-%d", os.Getpid())), limit)
	if err != nil {
		t.Fatal(err)
	}
	pid := netnsServer(t, port, "true", func(pid int) {
		if err := cg.Add(pid); err != nil {
			t.Fatal(err)
		}
	})
	// The server goes first: a cgroup with a task in it cannot be removed.
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); cg.Remove() != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 8192, Max: 8192}, nil); err != nil {
		t.Fatal(err)
	}
	dialIn(t, pid, port, now)
	h, sample := headroomJSON(t, "--pid", fmt.Sprint(pid))
	usage := cg.Usage()
	c, _ := sample["cgroup"].(map[string]any)
	if h.Now != now || sample["other_netns"] != true || c == nil {
		t.Fatalf("%d connections (want %d), netns %v, cgroup %v", h.Now, now, sample["netns"], c)
	}
	if got := uint64(c["memory_current"].(float64)); uint64(c["memory_max"].(float64)) != limit || got > usage+usage/10 || got < usage-usage/10 {
		t.Errorf("cgroup %v: want memory_max %d and memory_current within a tenth of its file's %d", c, limit, usage)
	}
	mc := headroomLimit(h, "memory cgroup")
	if h.Binding != "memory cgroup" || mc == nil || *mc.More == 0 || !strings.Contains(h.Verdict, "memory cgroup binds first") {
		t.Errorf("binding %q, memory cgroup %+v, verdict %q; want the cgroup's limit first", h.Binding, mc, h.Verdict)
	}
}

// netnsServer starts the Go test server on port in a network namespace of
// its own (unshare --net), after setup (a shell command) there, and calls
// before (if any) with its pid before it starts; unshare and sh exec, so
// the pid is the server's. It returns once the server listens, and kills
// it when the test ends.
func netnsServer(t *testing.T, port int, setup string, before func(pid int)) int {
	t.Helper()
	need(t, "unshare", "util-linux")
	bin := goecho(t)
	srv := exec.Command("unshare", "--net", "sh", "-c", fmt.Sprintf(
		`read go; ip link set lo up && %s && exec %s 127.0.0.1:%d`, setup, bin, port))
	goOn, _ := srv.StdinPipe()
	out := &output{}
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	pid := srv.Process.Pid
	if before != nil {
		before(pid)
	}
	fmt.Fprintln(goOn)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "goecho" && socketFDs(t, pid) > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never listened in its namespace:\n%s", out)
		}
	}
}

// dialIn opens n connections to 127.0.0.1:port from inside pid's network
// namespace, on a thread that joined it (and ends with it), held until the
// test ends; n < 0 opens as many as connect() allows and returns the error
// that stopped it. It waits for the server to accept them.
func dialIn(t *testing.T, pid, port, n int) (int, error) {
	t.Helper()
	type result struct {
		conns []net.Conn
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		var r result
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		for r.err = err; r.err == nil && (n < 0 || len(r.conns) < n); {
			var c net.Conn
			if c, r.err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); r.err == nil {
				r.conns = append(r.conns, c)
			}
		}
		done <- r
	}()
	r := <-done
	t.Cleanup(func() {
		for _, c := range r.conns {
			c.Close()
		}
	})
	if n >= 0 && r.err != nil {
		t.Fatalf("dialing from pid %d's namespace: %v", pid, r.err)
	}
	for deadline := time.Now().Add(10 * time.Second); n > 0 && socketFDs(t, pid)-1 < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // the server accepting: its sockets but its listener
	}
	return len(r.conns), r.err
}

// --watch samples until interrupted, a line a sample with the rate; the
// textfile holds each sample's figures, passes promlint, and is replaced
// whole; a server gone ends the watch with what happened.
func TestHeadroomWatchAndTextfile(t *testing.T) {
	needRoot(t)
	const port, nofile = 19983, 2000
	pid := startGoecho(t, port, nofile)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(n int) {
		for len(conns) < n {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	dial(100)
	dir := t.TempDir()
	watch := func() (*exec.Cmd, *output) {
		cmd := exec.Command(toolBinary, "headroom", "--port", fmt.Sprint(port), "--watch", "200ms", "--textfile", dir)
		out := &output{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	cmd, out := watch()
	out.waitFor(t, "  100 connections (+0/s)", 10*time.Second)
	dial(300)
	out.waitFor(t, "  300 connections", 10*time.Second)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("--watch after SIGINT: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "fds per process binds first at") || !strings.Contains(out.String(), "at this rate") {
		t.Errorf("watch lines lack the binding limit and when:\n%s", out)
	}

	// The last sample's figures, against the server's fd table.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "c10mprobe_headroom.prom" {
		t.Fatalf("textfile dir holds %v: want the one file, no temporary left", entries)
	}
	data, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(bytes.NewReader(data)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", err, problems)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	value := func(name, limit string) float64 {
		for _, m := range families[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit || limit == "" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if c := value("c10mprobe_connections", ""); c != 300 {
		t.Errorf("c10mprobe_connections %v, want 300", c)
	}
	if more, used := value("c10mprobe_headroom_connections", "fds_per_process"), value("c10mprobe_limit_in_use", "fds_per_process"); more != float64(nofile-len(fds)) || used != float64(len(fds)) {
		t.Errorf("fds: %v more, %v in use; the server's fd table has %d of %d", more, used, len(fds), nofile)
	}

	// The server exits while watched: the watch says so, exit 1.
	cmd, out = watch()
	out.waitFor(t, "  300 connections", 10*time.Second)
	unix.Kill(pid, unix.SIGKILL)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), "the server is gone after 300 connections") {
		t.Errorf("watch of a server that exits: %v\n%s", err, out)
	}
}

// An ordinary user reads the headroom of its own server: its connections,
// fds and memory, a socket's objects priced from BTF (slabinfo is root's)
// within 2 % of what root prices from slabinfo but the LSM caches, and it
// says what it could not read.
func TestHeadroomAsAnOrdinaryUser(t *testing.T) {
	needRoot(t) // to become nobody
	const port, now = 19985, 200
	bin := goecho(t)
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	srv := exec.Command(bin, fmt.Sprintf("127.0.0.1:%d", port))
	srv.SysProcAttr = nobody
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < now {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			time.Sleep(50 * time.Millisecond) // not listening yet
			continue
		}
		conns = append(conns, c)
	}
	for deadline := time.Now().Add(10 * time.Second); countOnPort(t, port) < now && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the last accepts

	cmd := exec.Command(toolBinary, "headroom", "--port", fmt.Sprint(port), "--json")
	cmd.SysProcAttr = nobody
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("headroom as nobody: %v\n%s", err, out)
	}
	var v struct {
		Headroom analysis.Headroom `json:"headroom"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	h := v.Headroom
	asRoot, _ := headroomJSON(t, "--port", fmt.Sprint(port))
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", srv.Process.Pid))
	if fd := headroomLimit(h, "fds per process"); h.Now != now || fd == nil || fd.InUse != int64(len(fds)) {
		t.Errorf("as nobody: %d connections, fds %+v; want %d and %d fds in use", h.Now, fd, now, len(fds))
	}
	// BTF lays the objects out as SLUB does: their sizes in /proc/slabinfo,
	// two sockets a connection. It leaves out the LSM blob caches, sized at
	// boot by the LSMs loaded (88 + 48 B on Debian's 6.12, 32 + 24 on 6.18
	// here), and each slab's pages, which root prices the objects at
	// (/sys/kernel/slab, /proc/slabinfo: root's).
	caches, err := procfs.ReadSlabinfo()
	if err != nil {
		t.Fatal(err)
	}
	var sizes float64
	for _, c := range slabmodel.Charged {
		sz := caches[c].ObjSize
		if sz == 0 { // merged into another cache: its sysfs alias
			v, _ := procfs.ReadInt("/sys/kernel/slab/" + c + "/slab_size")
			sz = uint64(v)
		}
		if c != "lsm_inode_cache" && c != "lsm_file_cache" {
			sizes += 2 * float64(sz)
		}
	}
	k := h.PerConn.Kernel
	if k < 0.98*sizes || k > 1.02*sizes || !strings.Contains(h.PerConn.KernelWhy, "BTF") {
		t.Errorf("a connection's kernel memory as nobody %.0f B (%s); slabinfo's object sizes %.0f B", k, h.PerConn.KernelWhy, sizes)
	}
	if k >= asRoot.PerConn.Kernel {
		t.Errorf("as nobody %.0f B a connection, as root %.0f B (%s): root's, at the slabs' pages and with the LSM blobs, is more", k, asRoot.PerConn.Kernel, asRoot.PerConn.KernelWhy)
	}
	if len(h.Unread) == 0 || !strings.Contains(strings.Join(h.Unread, "; "), "/proc/slabinfo") {
		t.Errorf("as nobody, unread %q: want /proc/slabinfo named", h.Unread)
	}
	// Root's server: nobody cannot see whose it is, and says why.
	rootSrv := exec.Command(bin, "127.0.0.1:19986")
	if err := rootSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { rootSrv.Process.Kill(); rootSrv.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:19986"); err == nil {
			c.Close()
			break
		}
	}
	cmd = exec.Command(toolBinary, "headroom", "--port", "19986")
	cmd.SysProcAttr = nobody
	msg, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(msg), "only root reads") {
		t.Errorf("nobody's headroom of root's server: %v, %q; want exit 1 saying root is needed", err, msg)
	}
}

// A thread-per-connection JVM run by nobody under RLIMIT_NPROC 600 is named
// bound by its threads, as run names it (TestProbeServerThreads), at the
// count where it then really stops serving.
func TestHeadroomNamesAThreadPerConnectionServersThreads(t *testing.T) {
	needRoot(t)
	java, classes := javaEchoServer(t)
	setpriv := need(t, "setpriv", "util-linux")
	prlimit := need(t, "prlimit", "util-linux")
	const port, now = 19987, 200
	// prlimit and setpriv exec: the pid is the JVM's.
	srv := exec.Command(prlimit, "--nproc=600", setpriv, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
		java, "-Xmx128m", "-Xss256k", "-cp", classes, "EchoServer", fmt.Sprint(port))
	srvOut := &output{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	pid := srv.Process.Pid
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); len(conns) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the JVM never listened")
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			conns = append(conns, c)
		}
	}
	// The JVM's sockets are AF_INET6 (IPv4-mapped): both families counted.
	held := func() int {
		established, queued := onPort(t, port)
		return established - queued
	}
	dial := func(n int) {
		for range n {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second); err == nil {
				conns = append(conns, c)
			}
		}
	}
	dial(now - 1)
	for deadline := time.Now().Add(20 * time.Second); held() < now && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	h, _ := headroomJSON(t, "--pid", fmt.Sprint(pid))
	th := headroomLimit(h, "threads")
	if h.Now != now || h.Binding != "threads" || th == nil || !strings.Contains(th.Value, "RLIMIT_NPROC 600") {
		t.Fatalf("%d connections, binding %q, threads %+v; want %d bound by threads under RLIMIT_NPROC 600", h.Now, h.Binding, th, now)
	}
	// Fill it: each connection past its threads it closes.
	dial(int(*th.More) + 100)
	time.Sleep(2 * time.Second)
	got, want := held(), int(*th.BindsAt)
	t.Logf("the JVM holds %d once its threads ran out; headroom said %d", got, want)
	if got < want*97/100 || got > want*103/100 {
		t.Errorf("the JVM holds %d connections once its threads ran out; headroom said %d\nits output:\n%s", got, want, srvOut)
	}
}

// onPort counts the established sockets on a local port, both families,
// and what waits in its listeners' accept queues.
func onPort(t *testing.T, port uint16) (established, queued int) {
	t.Helper()
	count := func(s *sockdiag.Socket) {
		switch {
		case s.Local.Port() != port:
		case s.State == sockdiag.StateListen:
			queued += int(s.RQueue)
		case s.State == sockdiag.StateEstablished:
			established++
		}
	}
	states := uint32(1<<sockdiag.StateListen | 1<<sockdiag.StateEstablished)
	if err := sockdiag.DumpIPv4(states, count); err != nil {
		t.Fatal(err)
	}
	if err := sockdiag.DumpIPv6(states, count); err != nil {
		t.Fatal(err)
	}
	return established, queued
}

// startGoecho starts the Go test server on 127.0.0.1:port, its fds capped
// at nofile (0 leaves them), and returns its pid once it listens: a run
// started sooner finds nothing at the target. It is killed when the test ends.
func startGoecho(t *testing.T, port int, nofile uint64) int {
	t.Helper()
	srv := exec.Command(goecho(t), fmt.Sprintf("127.0.0.1:%d", port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	pid := srv.Process.Pid
	if nofile > 0 {
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: nofile, Max: nofile}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !listening(t, uint16(port)); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the Go server never listened on %d", port)
		}
	}
	return pid
}

// listening says whether a socket listens on the local port.
func listening(t *testing.T, port uint16) bool {
	t.Helper()
	found := false
	err := sockdiag.DumpIPv4(1<<sockdiag.StateListen, func(s *sockdiag.Socket) { found = found || s.Local.Port() == port })
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// goecho is the Go test server's binary, where nobody can run it too
// (t.TempDir's parent is root's alone).
func goecho(t *testing.T) string {
	t.Helper()
	if pre := prebuilt("goecho"); pre != "" {
		return pre
	}
	dir, err := os.MkdirTemp("", "c10mprobe-goecho")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "goecho")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/servers/goecho").CombinedOutput(); err != nil {
		t.Fatalf("building the Go server: %v\n%s", err, out)
	}
	return bin
}

// A server with RLIMIT_NOFILE 5,000 holding 2,000 connections of a run:
// headroom names its fds at 5,000 less what it holds for itself, ≈ 2,990
// more; then a run to the limit finds the server held just that.
func TestHeadroomPredictsWhereARunFindsTheServersFDs(t *testing.T) {
	needRoot(t)
	const port, now, nofile = 19988, 2000, 5000
	pid := startGoecho(t, port, nofile)
	target := fmt.Sprintf("127.0.0.1:%d", port)
	holding, o, e, dir := start(t, "--conns", fmt.Sprint(now), "--target", target, "--exchange", "echo", "--no-bpf", "--hold", "120s")
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if held, queued := onPort(t, port); held-queued >= now {
			break
		}
	}
	h, sample := headroomJSON(t, "--pid", fmt.Sprint(pid))
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	// Socket buffer pages in use against /proc/net/sockstat, read just
	// after (the held connections are idle: a few pages may come and go).
	if sock, err := procfs.ReadSockstat(); err != nil {
		t.Fatal(err)
	} else if l := headroomLimit(h, "tcp_mem pressure"); l == nil || l.InUse > sock.TCPMemPages+16 || l.InUse+16 < sock.TCPMemPages {
		t.Errorf("tcp_mem %+v; sockstat says %d pages", l, sock.TCPMemPages)
	}
	// Its connections against iproute2's count; the run's clients are on
	// this host, two sockets a connection; its netpoller watches each.
	p := sample["processes"].([]any)[0].(map[string]any)
	if h.Now != ssCount(t, port) || int(sample["local_peers"].(float64)) != now || h.PerConn.Sockets != 2 || p["epoll_watches"].(float64) < now {
		t.Errorf("%d connections (ss: %d), %v local peers, %.2f sockets a connection, %v epoll watches; want %d, all local, 2, ≥ %d",
			h.Now, ssCount(t, port), sample["local_peers"], h.PerConn.Sockets, p["epoll_watches"], now, now)
	}
	// Found by its port, the same server and the same limit.
	if byPort, _ := headroomJSON(t, "--port", fmt.Sprint(port)); byPort.Binding != h.Binding || byPort.Now != h.Now {
		t.Errorf("--port: %d connections bound by %q; --pid: %d by %q", byPort.Now, byPort.Binding, h.Now, h.Binding)
	}
	fd := headroomLimit(h, "fds per process")
	if h.Now != now || h.Binding != "fds per process" || fd == nil || *fd.BindsAt != int64(now+nofile-len(fds)) {
		t.Fatalf("%d connections, binding %q, fds %+v; want %d, fds at %d (its fd table holds %d)", h.Now, h.Binding, fd, now, now+nofile-len(fds), len(fds))
	}
	if at, more := float64(*fd.BindsAt), float64(*fd.More); at < 4990*0.99 || at > 4990*1.01 || more < 2990*0.99 || more > 2990*1.01 {
		t.Errorf("fds bind at %.0f, %.0f more: want ≈ 4,990 and ≈ 2,990", at, more)
	}
	holding.Process.Signal(os.Interrupt)
	finish(t, holding, o, e, dir)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if held, _ := onPort(t, port); held == 0 {
			break
		}
	}

	r := run(t, "--conns", "6000", "--target", target, "--exchange", "echo", "--timeout", "3s", "--no-bpf")
	s := readSummary(t, r)
	held := float64(s.Result.Server.Held)
	t.Logf("headroom said fds bind at %d; the run found the server held %.0f", *fd.BindsAt, held)
	if want := float64(*fd.BindsAt); held < 0.99*want || held > 1.01*want {
		t.Errorf("the run to the limit: the server held %.0f, headroom said %.0f", held, want)
	}
	if e := s.Explanation; e == nil || e.BindingLimit != "server fds" {
		t.Errorf("the run's explanation %+v: want server fds", e)
	}
}

// A connection that carried megabytes has its receive buffer grown by
// autotuning (tcp_rcv_space_adjust) past tcp_rmem[1]: headroom names it by
// its peer.
func TestHeadroomNamesGrownReceiveBuffers(t *testing.T) {
	needRoot(t)
	const port = 19989
	startGoecho(t, port, 0)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 32 MiB through the echo, read back as it comes.
	go func() {
		buf := make([]byte, 1<<20)
		for range 32 {
			c.Write(buf)
		}
	}()
	if _, err := io.ReadFull(c, make([]byte, 32<<20)); err != nil {
		t.Fatal(err)
	}
	rmem, err := sysctl.Read("net.ipv4.tcp_rmem")
	if err != nil {
		t.Fatal(err)
	}
	var lo, def uint64
	fmt.Sscan(rmem, &lo, &def)
	h, _ := headroomJSON(t, "--port", fmt.Sprint(port))
	if b := h.Buffers; b.Grown != 1 || len(b.Largest) != 1 || b.Largest[0].Peer != c.LocalAddr().String() || b.Largest[0].RcvBuf <= def {
		t.Errorf("buffers %+v: want the one connection's receive buffer named, grown past tcp_rmem[1] (peer %s)", b, c.LocalAddr())
	}
}
