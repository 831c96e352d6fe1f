package main

// The article's machine, smaller: --machine-mem reserves the rest of RAM as
// huge pages, a ballast stands for the desktop and heap, a swapfile takes
// what the kernel pushes out. A 3 GiB machine proves what 8 GiB does, in a
// fraction of the time.

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// machineArgs make a machine with 1.25 GiB free for connections beside
// what is in use, a 768 MiB ballast and 512 MiB of swap (about 3 GiB here):
// socket slab fills it near 200,000 connections.
func machineArgs(t *testing.T) []string {
	t.Helper()
	// A run before this one frees its sockets through RCU callbacks, which
	// lazy RCU holds up to 10 s: let them run before reading what is in use.
	procfs.SettleRCU()
	time.Sleep(time.Second)
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	const ballast, reserve, room = 768 << 20, 512 << 20, 5 << 28
	size := m.MemTotal - m.MemAvailable + ballast + reserve + room
	size = (size + 1<<28 - 1) &^ (1<<28 - 1) // whole 256 MiB
	return []string{"--conns", "600000", "--machine-mem", fmt.Sprint(size), "--ballast", fmt.Sprint(ballast), "--reserve", fmt.Sprint(reserve),
		"--swap", "512MiB", "--no-bpf", "--listen", "127.0.0.1:19963"}
}

func hugePages(t *testing.T) string {
	t.Helper()
	v, err := sysctl.Read("vm.nr_hugepages")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// assertMachineRestored: huge pages given back, the swapfile off, nothing
// of the run alive.
func assertMachineRestored(t *testing.T, dir, pages string) {
	t.Helper()
	if now := hugePages(t); now != pages {
		t.Errorf("vm.nr_hugepages %s after the run, was %s", now, pages)
	}
	if swapActive(dir) {
		t.Error("the run's swapfile is still swapped on")
	}
	assertNoWorkers(t, dir) // the ballast is listed with the workers
	if left := runner.Leftovers(dir); len(left) > 0 {
		t.Errorf("leftovers: %v", left)
	}
}

func TestMachineIntoSwap(t *testing.T) {
	needRoot(t)
	before, pages := sysctls(t), hugePages(t)
	args := machineArgs(t)
	r := run(t, args...)
	s := readSummary(t, r)
	m, b := s.Result.Machine, s.Result.Ballast
	if m == nil || b == nil || s.Result.Swap == nil {
		t.Fatalf("summary machine %+v, ballast %+v, swap %+v\nstderr:\n%s", m, b, s.Result.Swap, r.stderr)
	}
	// The guard stopped it, and the parent lived to say so (this summary).
	switch l := s.Result.Limit; {
	case r.code != exitNotAll || l == nil:
		t.Fatalf("exit %d, limit %+v: the machine should have stopped the run\nstderr:\n%s", r.code, l, r.stderr)
	case l.Kind != limit.SwapFull && l.Kind != limit.MemoryPressure && l.Kind != limit.MinWatermark && l.Kind != limit.ReclaimExhausted:
		t.Errorf("stopped by %s, want one of the swap guard's reasons", l.Kind)
	}
	// The machine the run had, against --machine-mem.
	if want := m.MemBytes; m.LeftBytes < want || m.LeftBytes > want+want/100 || fmt.Sprint(want) != args[3] {
		t.Errorf("the machine had %d bytes, want %s (+1 %%)", m.LeftBytes, args[3])
	}
	// Into swap: the kernel wrote pages out. Whose is the kernel's choice:
	// the ballast's, or another process's older pages (a CI host's own
	// 78 MiB went first once, the ballast's none), so the ballast's share is
	// logged, not required. (Its touches may find their pages in the swap
	// cache: minor faults.)
	if s.Result.Swap.SwapOut == 0 || b.Touches == 0 {
		t.Errorf("pswpout %d, %d ballast touches; want both > 0\nstderr:\n%s", s.Result.Swap.SwapOut, b.Touches, r.stderr)
	}
	t.Logf("pswpout %d pages, the ballast's VmSwap at most %d B", s.Result.Swap.SwapOut, b.SwappedBytesPeak)
	if s.Result.Verified != s.Result.Established || s.Result.Established < 100000 {
		t.Errorf("%d established, %d verified: every connection opened must be verified", s.Result.Established, s.Result.Verified)
	}
	e := s.Explanation
	if e == nil || e.Swap == nil || e.Swap.SwapStartConnections == 0 || e.Swap.SwapStartConnections >= s.Result.Established {
		t.Fatalf("explanation's swap leg %+v, want swapping begun before the stop", e)
	}
	// The ballast's VmSwap is part of all swap in use (meminfo), sampled
	// less often: within a tenth and a few MiB of it.
	if sw := e.Swap.SwappedBytesPeak; b.SwappedBytesPeak > sw+sw/10+16<<20 {
		t.Errorf("the ballast had %d B in swap, more than the %d B all swap held", b.SwappedBytesPeak, sw)
	}
	if m.ActualSwapStartConnections != e.Swap.SwapStartConnections || m.PredictedSwapStartConnection == 0 || m.PredictedConnections == 0 {
		t.Errorf("machine %+v: predictions and the actual swap start must be recorded", m)
	}
	if !strings.Contains(e.Verdict, " machine, from ") || !strings.Contains(r.stdout, "Swap: from") {
		t.Errorf("verdict %q; stdout lacks the swap leg", e.Verdict)
	}
	// The end the calibrated prediction named is the one that came, and
	// near where it said (issue #23's goal is 10 %; held here to 15 %, one
	// run on whatever host runs the tests).
	if p := m.Prediction; p == nil || p.Projection.StopBy != s.Result.Limit.Kind {
		t.Errorf("stopped by %s; the calibrated prediction named %+v", s.Result.Limit.Kind, p)
	}
	off := units.Off(m.ActualConnections, m.PredictedConnections)
	t.Logf("stopped by %s at %d, %+.1f %% from the calibrated %d; the opening held %d times, %.1f s", s.Result.Limit.Kind, m.ActualConnections, off, m.PredictedConnections, m.OpeningHolds, m.OpeningHeldSeconds)
	if math.Abs(off) > 15 {
		t.Errorf("stopped %+.1f %% from the calibrated prediction", off)
	}
	assertPredictAgain(t, r.dir, *m, b.Bytes)
	assertMachineRestored(t, r.dir, pages)
	assertSysctls(t, before)
}

// waitSwapping waits until the run's swapfile holds pages and its workers
// are started (the huge pages alone can push the host's pages out before);
// a run that ended first fails the test with its output. Under TCG a
// guest's run had opened 6,220 (6.1) and 16,384 (6.12) connections of
// the ≈ 150,000 before swap after 90 s (2026-12-07): ten minutes.
func waitSwapping(t *testing.T, cmd *osexec.Cmd, stderr fmt.Stringer, dir string) {
	t.Helper()
	began := time.Now()
	for time.Since(began) < 10*time.Minute {
		// Exited (a zombie until finish reaps it) before swapping.
		if st, err := procfs.ReadStat(cmd.Process.Pid); err != nil || st.State == 'Z' {
			t.Fatalf("the run ended before it went into swap\nstderr:\n%s", stderr)
		}
		_, started := os.Stat(filepath.Join(dir, "workers.pids"))
		if m, err := procfs.ReadMeminfo(); err == nil && started == nil && swapActive(dir) && m.SwapTotal > m.SwapFree {
			t.Logf("into swap %s after the start", time.Since(began).Round(time.Second))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatalf("the run never went into swap in %s\nstderr:\n%s", time.Since(began).Round(time.Second), stderr)
}

// SIGINT while swapping: the run stops, verifies what it holds, restores.
func TestMachineSIGINTWhileSwapping(t *testing.T) {
	needRoot(t)
	before, pages := sysctls(t), hugePages(t)
	cmd, o, e, dir := start(t, machineArgs(t)...)
	waitSwapping(t, cmd, e, dir)
	assertInstrumentLocked(t, cmd.Process.Pid, dir)
	cmd.Process.Signal(syscall.SIGINT)
	r := finish(t, cmd, o, e, dir)
	if r.code != exitNotAll {
		t.Errorf("exit %d after SIGINT, want %d\nstderr:\n%s", r.code, exitNotAll, r.stderr)
	}
	assertMachineRestored(t, dir, pages)
	assertSysctls(t, before)
}

// SIGKILL while swapping: the run's keeper gives the huge pages back at
// once (the machine is the host again), the ballast and the workers die
// with the run, and the swapfile is left for restore.
func TestMachineRestoreAfterSIGKILL(t *testing.T) {
	needRoot(t)
	before, pages := sysctls(t), hugePages(t)
	cmd, o, e, dir := start(t, machineArgs(t)...)
	waitSwapping(t, cmd, e, dir)
	cmd.Process.Kill()
	r := finish(t, cmd, o, e, dir) // its stderr ends when the keeper, which shares it, has exited
	if now := hugePages(t); now != pages {
		t.Errorf("vm.nr_hugepages %s once the killed run's keeper ended, was %s\n%s", now, pages, r.stderr)
	}
	if !strings.Contains(r.stderr, "keeper: the run died holding the rest of RAM as huge pages") {
		t.Errorf("the keeper did not say it gave the huge pages back:\n%s", r.stderr)
	}
	// The keeper ends once it has; the workers, whose hundreds of
	// thousands of sockets take a while to free, are restore's to wait for.
	data, _ := os.ReadFile(filepath.Join(dir, "workers.pids"))
	keeper := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[1] == host.KeeperRole {
			keeper, _ = strconv.Atoi(f[0])
		}
	}
	for deadline := time.Now().Add(3 * time.Second); keeper > 0 && syscall.Kill(keeper, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the keeper (pid %d) is alive after it gave the huge pages back", keeper)
			break
		}
	}
	if keeper == 0 {
		t.Errorf("workers.pids names no keeper:\n%s", data)
	}
	left := strings.Join(runner.Leftovers(dir), "; ")
	if strings.Contains(left, "vm.nr_hugepages") || !strings.Contains(left, "swapfile") {
		t.Errorf("leftovers %q, want the swapfile and not the huge pages", left)
	}
	out, err := osexec.Command(toolBinary, "restore", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	assertMachineRestored(t, dir, pages)
	assertSysctls(t, before)
}

func TestMachineBadInput(t *testing.T) {
	needRoot(t) // an ordinary user is refused for that before these checks
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--machine-mem", fmt.Sprint(m.MemTotal + 1<<30)}, "not below this host's"},
		{[]string{"--machine-mem", "512MiB"}, "smaller than what is in use"},
		{[]string{"--machine-mem", "0"}, "more than 0 bytes"},
		{[]string{"--family", "inet7"}, "inet or inet6"},
	} {
		r := run(t, append([]string{"--conns", "10", "--no-bpf"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
		if _, err := os.Stat(r.dir); err == nil {
			t.Errorf("%v: a refused run made its directory", tc.args)
		}
	}
}

// predict says which of its figures were measured, given or modelled.
func TestPredictSaysWhatWasMeasured(t *testing.T) {
	needRoot(t) // the slab model reads /proc/slabinfo
	var out, errOut strings.Builder
	if code := cli([]string{"predict", "--mem", "8GiB", "--swap", "2GiB", "--family", "inet6"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"Figures: modelled: kernel bytes per connection", "TCPv6", "given: --mem, --swap", "measured: the baseline"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("predict's output lacks %q:\n%s", want, out.String())
		}
	}
}

// Without swap and without a ballast, nothing moves out to make room: the
// guard stops the run before the OOM killer, three runs in a row, every
// held connection verified. How near the prediction the stop comes is
// logged, not held: the prediction's own error is issue #23's (one of
// three runs stopped at 88 % of a calibrated prediction 13 % above the
// other two, 2026-12-06).
func TestMachineWithoutSwapStopsBeforeTheOOMKiller(t *testing.T) {
	needRoot(t)
	before, pages := sysctls(t), hugePages(t)
	for i := range 3 {
		procfs.SettleRCU()
		time.Sleep(time.Second)
		m, err := procfs.ReadMeminfo()
		if err != nil {
			t.Fatal(err)
		}
		size := m.MemTotal - m.MemAvailable + 1<<30 + 5<<28 // the reserve (1 GiB by default) and 1.25 GiB of room
		size = (size + 1<<28 - 1) &^ (1<<28 - 1)
		vm0, _ := procfs.ReadVmstat()
		r := run(t, "--conns", "600000", "--machine-mem", fmt.Sprint(size), "--no-bpf", "--listen", "127.0.0.1:19964")
		vm1, _ := procfs.ReadVmstat()
		s := readSummary(t, r)
		l, mr := s.Result.Limit, s.Result.Machine
		if r.code != exitNotAll || l == nil || mr == nil {
			t.Fatalf("run %d: exit %d, limit %+v, machine %+v\nstderr:\n%s", i, r.code, l, mr, r.stderr)
		}
		if kills := vm1["oom_kill"] - vm0["oom_kill"]; kills > 0 || len(s.Result.Deaths) > 0 {
			t.Errorf("run %d: %d OOM kills (/proc/vmstat), deaths %+v", i, kills, s.Result.Deaths)
		}
		if l.Kind != limit.ReclaimExhausted && l.Kind != limit.MinWatermark && l.Kind != limit.MemoryPressure {
			t.Errorf("run %d: stopped by %s (%s), want a guard", i, l.Kind, l.Detail)
		}
		if s.Result.Verified != s.Result.Established {
			t.Errorf("run %d: %d established, %d verified", i, s.Result.Established, s.Result.Verified)
		}
		t.Logf("run %d: %s at %d, %.0f %% of the %d predicted after calibration (model before the first connection: %d)",
			i, l.Kind, s.Result.Established, 100*float64(s.Result.Established)/float64(max(1, mr.PredictedConnections)), mr.PredictedConnections, mr.ModelConnections)
		assertPredictAgain(t, r.dir, *mr, 0)
		assertMachineRestored(t, r.dir, pages)
	}
	assertSysctls(t, before)
}

// assertPredictAgain: predict --from the run's directory makes the run's
// last prediction again (one model, on what the run recorded), also given
// its own ballast (of ballast bytes) as --ballast; a machine of twice the
// RAM holds more, and a ballast 1 GiB larger fewer.
func assertPredictAgain(t *testing.T, dir string, m host.MachineResult, ballast uint64) {
	t.Helper()
	if m.Prediction == nil || m.MeasuredOver == 0 {
		t.Errorf("machine %+v: no calibrated prediction recorded", m)
		return
	}
	predict := func(args ...string) uint64 {
		n, err := predictConnections(dir, args...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := predict(); got != m.PredictedConnections {
		t.Errorf("predict --from the run: %d connections, the run predicted %d after calibration", got, m.PredictedConnections)
	}
	if got := predict("--mem", fmt.Sprint(2*m.LeftBytes)); got <= m.PredictedConnections {
		t.Errorf("predict --from the run for twice its RAM: %d connections, not more than its %d", got, m.PredictedConnections)
	}
	if got := predict("--ballast", fmt.Sprint(ballast)); got != m.PredictedConnections {
		t.Errorf("predict --from the run --ballast %d, its own: %d connections, the run predicted %d", ballast, got, m.PredictedConnections)
	}
	if got := predict("--mem", fmt.Sprint(2*m.LeftBytes), "--ballast", fmt.Sprint(ballast+1<<30)); got >= predict("--mem", fmt.Sprint(2*m.LeftBytes)) {
		t.Errorf("predict --from the run for twice its RAM with a ballast 1 GiB larger: %d connections, not fewer", got)
	}
}

// assertInstrumentLocked: while the machine swaps, the run's parent and
// its client and server workers hold pages locked in RAM (VmLck), the
// ballast, the machine's other program, none.
func assertInstrumentLocked(t *testing.T, parent int, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "workers.pids"))
	if err != nil {
		t.Fatal(err)
	}
	locked := func(pid int) uint64 {
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	if locked(parent) == 0 {
		t.Errorf("the run's parent %d has nothing locked in RAM", parent)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		pid, _ := strconv.Atoi(f[0])
		n := locked(pid)
		// workers.pids is written when a worker starts; it locks its memory
		// once it has read its config, a moment later.
		for deadline := time.Now().Add(10 * time.Second); f[1] != "ballast" && n == 0 && time.Now().Before(deadline); n = locked(pid) {
			time.Sleep(50 * time.Millisecond)
		}
		switch {
		case f[1] == "ballast" && n > 0:
			t.Errorf("the ballast (pid %d) locked %d B: it is the machine's, and must be swappable", pid, n)
		case f[1] != "ballast" && n == 0:
			t.Errorf("%s worker %s (pid %d) has nothing locked in RAM", f[1], f[2], pid)
		}
	}
}

// headroom on the port of a --machine-mem run holding 100,000 connections
// says where memory binds; a run on the same machine to its guard then
// stops within a tenth of it. No swap: the guard's end is what kernel
// allocations can still get, less 64 MiB (--reserve here) and 1 KiB a
// connection, as headroom projects it (memmodel). The host's dcache holds
// a million dentries no one uses, as a host that has run for a while does:
// reclaim frees them for the connections, and headroom counts them (left
// out, a run in CI went 10.4 % past headroom's figure, and 23 % with these).
func TestHeadroomMemoryWhereAMachineRunStops(t *testing.T) {
	needRoot(t)
	before, pages := sysctls(t), hugePages(t)
	unused := t.TempDir()
	for i := range 1000000 {
		os.Stat(filepath.Join(unused, strconv.Itoa(i))) // a lookup that fails leaves a negative dentry
	}
	procfs.SettleRCU()
	time.Sleep(time.Second)
	m, err := procfs.ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	size := m.MemTotal - m.MemAvailable + 1<<30 + 5<<28 // as TestMachineWithoutSwap: 2.25 GiB of room
	size = (size + 1<<28 - 1) &^ (1<<28 - 1)
	const port, held = 19966, 100000
	cmd, o, e, dir := start(t, "--conns", fmt.Sprint(held), "--machine-mem", fmt.Sprint(size), "--no-bpf", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--hold", "120s")
	// Under TCG (the VM tier) Debian's 6.1 had opened 92,982 in 120 s.
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline) && ssCount(t, port) < held; time.Sleep(200 * time.Millisecond) {
	}
	out, err := osexec.Command(toolBinary, "headroom", "--port", fmt.Sprint(port), "--reserve", "64MiB", "--json").Output()
	cmd.Process.Signal(syscall.SIGINT)
	finish(t, cmd, o, e, dir)
	assertMachineRestored(t, dir, pages)
	if err != nil {
		t.Fatalf("headroom: %v\n%s", err, out)
	}
	var v struct {
		Headroom analysis.Headroom `json:"headroom"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	var mem *analysis.HeadroomLimit
	for i, l := range v.Headroom.Limits {
		if l.Name == "memory" {
			mem = &v.Headroom.Limits[i]
		}
	}
	if v.Headroom.Now != held || mem == nil || mem.BindsAt == nil {
		t.Fatalf("headroom held %d, memory %+v; want %d and where memory binds", v.Headroom.Now, mem, held)
	}
	if !strings.Contains(mem.Value, "of dentries and inodes no one holds") {
		t.Errorf("headroom's memory room leaves out the million unused dentries: %s", mem.Value)
	}

	r := run(t, "--conns", "600000", "--machine-mem", fmt.Sprint(size), "--no-bpf", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	s := readSummary(t, r)
	l := s.Result.Limit
	if l == nil || l.Kind != limit.ReclaimExhausted && l.Kind != limit.MinWatermark && l.Kind != limit.MemoryPressure {
		t.Fatalf("the run to the guard stopped by %+v, want a guard\n%s", l, r.stderr)
	}
	got, want := float64(s.Result.Established), float64(*mem.BindsAt)
	t.Logf("headroom said memory binds at %.0f (%s); the run stopped at %.0f by %s", want, mem.Value, got, l.Kind)
	// An agent on a host may list the workers' /proc/PID/fd while the run
	// goes (this VM has one): each fd then has a /proc inode, its dentry
	// and LSM blob, which headroom's server did not have when it looked.
	// The run's ledger counts them (slabinfo); the room they took is the
	// agent's, not the model's error.
	if junk := procInodesPerConnection(t, s); junk > 0 {
		per := v.Headroom.PerConn.Kernel + v.Headroom.PerConn.Buffers + v.Headroom.PerConn.User + 1024 // and the guard's 1 KiB
		t.Logf("the run's /proc inodes: %.0f B a connection; headroom's %.0f B priced without them", junk, per)
		want *= per / (per + junk)
	}
	if got < 0.9*want || got > 1.1*want {
		t.Errorf("the run stopped at %.0f, headroom said memory binds at %.0f", got, want)
	}
	assertMachineRestored(t, r.dir, pages)
	assertSysctls(t, before)
}

// procInodesPerConnection is what /proc inodes, with their dentries and
// LSM blobs, cost a connection of the run, from its ledger (slabinfo): one
// of each for every fd an agent listed.
func procInodesPerConnection(t *testing.T, s record.Summary) float64 {
	t.Helper()
	caches, err := procfs.ReadSlabinfo()
	if err != nil || s.Explanation == nil {
		return 0
	}
	proc := caches["proc_inode_cache"].ObjSize
	for _, l := range s.Explanation.Ledger {
		if l.Kind == "slab" && l.Name == "proc_inode_cache" && proc > 0 {
			return l.BytesPerConnection * float64(proc+caches["dentry"].ObjSize+caches["lsm_inode_cache"].ObjSize) / float64(proc)
		}
	}
	return 0
}
