package main

// Signals at every phase: the host is restored and nothing is left.

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"golang.org/x/sys/unix"
)

func TestSIGINTMidConnectRestoresAndLeavesNothing(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "50000", "--listen", "127.0.0.1:19905", "--rate", "5000",
		"--sysctl", "net.ipv4.tcp_rmem=4096 65536 1048576")
	waitConnecting(t, cmd, dir, 19905, 1)
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
	if s.Limit == nil || s.Limit.Kind != limit.Interrupted {
		t.Errorf("limit %+v, want interrupted", s.Limit)
	}
	// What was held was still verified.
	if s.Established == 0 || s.Established >= 50000 || s.Verified != s.Established {
		t.Errorf("established %d verified %d", s.Established, s.Verified)
	}
	assertNoWorkers(t, r.dir)
	assertSysctls(t, before)
}

// A signal during --hold ends the hold, says so, and restores; what was
// verified before it stands. SIGHUP (a dropped ssh) and SIGQUIT too: left to
// their defaults they ended the run with the backlog sysctls still raised.
func TestSignalDuringHoldCutsItShortAndRestores(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n = 10000
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			cmd, o, e, dir := startHolding(t, n, 19912+i*100, "60s")
			e.waitFor(t, "hold     ", 60*time.Second) // into the hold: its progress line
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			r := finish(t, cmd, o, e, dir)
			s := readSummary(t, r)
			if r.code != 0 || s.Verified != n || !s.Phases.HoldCutShort || s.Phases.HoldSeconds >= 60 || !strings.Contains(r.stdout, "hold: cut short by a signal") {
				t.Errorf("exit %d, verified %d, phases %+v\n%s", r.code, s.Verified, s.Phases, r.stdout)
			}
			// In a log, the hold's progress says so as it begins, with its countdown.
			if !strings.Contains(r.stderr, fmt.Sprintf("hold     %d connections held, %d verified, 1m0s left of the hold", n, n)) {
				t.Errorf("no progress line for the hold:\n%s", r.stderr)
			}
			assertSysctls(t, before)
			assertNoWorkers(t, dir)
		})
	}
}

// Workers that do not answer (stopped here with SIGSTOP) are killed by one
// deadline: with one timer for all, the second hung worker blocked the
// restore for good.
func TestHungWorkersAreKilledByOneDeadline(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "5000", "--listen", "127.0.0.1:19917", "--no-bpf", "--hold", "60s", "--timeout", "2s")
	for deadline := time.Now().Add(20 * time.Second); countOnPort(t, 19917) < 5000; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the run never held 5000 connections")
		}
	}
	stopped := 0
	data, _ := os.ReadFile(filepath.Join(dir, rundir.Workers))
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		pid, _ := strconv.Atoi(strings.Fields(line)[0])
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			stopped++
		}
	}
	if stopped < 2 {
		t.Fatalf("stopped %d workers, want 2 or more", stopped)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan result, 1)
	go func() { done <- finish(t, cmd, o, e, dir) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the run did not end 30 s after SIGINT with its workers stopped")
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the run took %s to end", took)
	}
	assertNoWorkers(t, dir)
	assertSysctls(t, before)
}

func TestSecondSIGINTAbortsAndStillRestores(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	cmd, o, e, dir := start(t, "--conns", "50000", "--listen", "127.0.0.1:19913", "--rate", "3000", "--hold", "30s")
	// A few thousand open, so that the first signal's orderly stop takes
	// longer than the 20 ms before the second: of a hundred or so (the
	// first sockets seen, under TCG) it was over before, and the run ended
	// orderly.
	waitConnecting(t, cmd, dir, 19913, 3000)
	cmd.Process.Signal(syscall.SIGINT)
	// Soon: the first signal's orderly stop of a few thousand connections
	// is over in a tenth of a second now (the close sends nothing); 20 ms
	// apart, the two are still two deliveries.
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan result, 1)
	go func() { done <- finish(t, cmd, o, e, dir) }()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		out, _ := exec.Command(toolBinary, "restore", dir).CombinedOutput()
		t.Fatalf("a second SIGINT did not end the run within 15 s (killed; restore: %s)", out)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "second signal") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// The peak was sampled after the workers were gone: no verdict.
	if s := readSummary(t, r); !s.Aborted || s.Explanation != nil || strings.Contains(r.stdout, "Verdict:") || !strings.Contains(r.stderr, "aborted by a second signal") {
		t.Errorf("aborted %v, explanation %v\nstdout:\n%s", s.Aborted, s.Explanation, r.stdout)
	}
	// A file closed twice (once through a stray finalizer) shows up as EBADF on a later open.
	if strings.Contains(r.stderr, "bad file descriptor") {
		t.Errorf("EBADF during the abort:\n%s", r.stderr)
	}
	assertNoWorkers(t, dir)
	assertSysctls(t, before)
}

func TestSIGKILLedRunIsUndoneByRestore(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	tracefsBefore := tracefsMounted()
	// A backend that needs tracefs, so that restore has a mount to undo.
	backend := bpf.Tracepoint
	if doctor(t).Forced[backend] != "ok" {
		backend = bpf.Kprobe
	}
	cmd, o, e, dir := start(t, "--conns", "2000", "--listen", "127.0.0.1:19906", "--hold", "60s", "--port-range", "41000-59999",
		"--backend", string(backend), "--swap", "16MiB", "--mem-limit", "64MiB")
	for deadline := time.Now().Add(60 * time.Second); countOnPort(t, 19906) < 2000; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			// Killed, the run leaves what this test is about: undo it
			// before failing, or the host keeps the swapfile and sysctls.
			cmd.Process.Kill()
			cmd.Wait()
			out, _ := exec.Command(toolBinary, "restore", dir).CombinedOutput()
			t.Fatalf("the run never held 2000 connections\n%s\n%s", e, out)
		}
	}
	if v, _ := sysctl.Read("net.ipv4.ip_local_port_range"); v != "41000 59999" {
		t.Errorf("port range during the run = %q", v)
	}
	if !tracefsMounted() {
		t.Errorf("the %s backend runs without tracefs mounted", backend)
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
	// The next run, wherever its directory, finds the killed one by its
	// marker and refuses, with exit 2, naming what it left and the command.
	next := filepath.Join(t.TempDir(), "next")
	out, err := exec.Command(toolBinary, "run", "--conns", "10", "--listen", "127.0.0.1:19919", "--no-bpf", "--no-tune", "--out", next).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "was killed before it put the host back") ||
		!strings.Contains(string(out), "net.ipv4.ip_local_port_range = 41000 59999") || !strings.Contains(string(out), "c10mprobe restore "+dir) {
		t.Errorf("a run after the killed one: %v\n%s", err, out)
	}
	if _, err := os.Stat(next); !os.IsNotExist(err) {
		t.Errorf("the refused run made %s", next)
	}
	// restore with no directory restores every killed run its marker names.
	out, err = exec.Command(toolBinary, "restore").CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if tw := timeWaitOn(t, 19906); tw != 0 {
		t.Errorf("%d sockets of the killed run left in TIME_WAIT after restore", tw)
	}
	wants := []string{"removed memory cgroup", "removed swapfile", "ip_local_port_range " + before["net.ipv4.ip_local_port_range"] + " → 41000 59999, restored"}
	if !tracefsBefore {
		wants = append(wants, "removed tracefs")
	}
	for _, want := range wants {
		if !strings.Contains(string(out), want) {
			t.Errorf("restore does not say %q:\n%s", want, out)
		}
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
	if killed := host.Killed(); len(killed) != 0 {
		t.Errorf("restore left the markers of %v", killed)
	}
}

// waitConnecting returns once the run has connections established on its
// port: its signal handling is in place by then, and its probes loaded,
// which under a slow machine (TCG) takes longer than any fixed sleep.
func waitConnecting(t *testing.T, cmd *exec.Cmd, dir string, port uint16, atLeast int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); countOnPort(t, port) < atLeast; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			out, _ := exec.Command(toolBinary, "restore", dir).CombinedOutput()
			t.Fatalf("fewer than %d sockets on port %d after 60 s (killed; restore: %s)", atLeast, port, out)
		}
	}
}

// A SIGINT once the probes are attached, before or as the first
// connection opens (seconds on a slow machine), ends the run with exit 1
// and leaves the host as it was: no sysctl changed, no tracefs mount, no
// worker. The tool takes signals before it loads the probes.
func TestSIGINTBeforeTheFirstConnection(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	tracefsBefore := tracefsMounted()
	cmd, o, e, dir := start(t, "--conns", "20000", "--listen", "127.0.0.1:19907")
	// Its probes are attached, its first connection not yet opened.
	e.waitFor(t, "probes: ", 60*time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	r := finish(t, cmd, o, e, dir)
	if r.code != 1 {
		t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	assertSysctls(t, before)
	if tracefsMounted() != tracefsBefore {
		t.Errorf("tracefs mounted %v after the run, %v before", tracefsMounted(), tracefsBefore)
	}
	if _, err := os.Stat(filepath.Join(dir, "workers.pids")); err == nil {
		assertNoWorkers(t, dir)
	}
}

// A run whose output goes to a pipe that closes (`c10mprobe run | tee log`,
// and tee killed) still restores the host: a write to a broken pipe on
// stdout or stderr would otherwise end it by SIGPIPE, host changed, in the
// middle of its cleanup.
func TestRunWhoseOutputPipeClosesStillRestores(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	dir := filepath.Join(t.TempDir(), "run")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(toolBinary, "run", "--out", dir, "--conns", "20000", "--listen", "127.0.0.1:19906", "--rate", "4000", "--no-bpf")
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	restoreIfKilled(t, dir)
	waitConnecting(t, cmd, dir, 19906, 1)
	pr.Close() // the reader goes away: every later write fails with EPIPE
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Errorf("the run died by %v after its output pipe closed (%v)", ws.Signal(), err)
	}
	if slices.Contains(host.Killed(), dir) {
		t.Errorf("the run left the host changed (a killed run's marker names %s)", dir)
	}
	assertNoWorkers(t, dir)
	assertSysctls(t, before)
}
