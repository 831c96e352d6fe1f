package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// A worker SIGKILLed at the peak of a 200k run: the summary says who died,
// how, in which phase, what was held before and after and what was lost,
// and the per-connection figures are the peak's, divided by what was held
// when they were measured.
func TestWorkerSIGKILLedAtThePeakIsAccountedFromThePeak(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n, port = 200000, 19916
	cmd, o, e, dir := start(t, "--conns", fmt.Sprint(n), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--no-bpf", "--hold", "120s")
	for deadline := time.Now().Add(4 * time.Minute); !strings.Contains(e.String(), "connections held"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the run never reached its hold:\n%s", e.String())
		}
	}
	victim := workerPid(t, dir, "client")
	// The victim's own count, read from its fd table, not from the run.
	held := socketFDs(t, victim)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := finish(t, cmd, o, e, dir)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.StoppedBy != limit.WorkerDied || len(s.Deaths) != 1 {
		t.Fatalf("stopped by %s, deaths %+v: want worker_died and one death", s.StoppedBy, s.Deaths)
	}
	d := s.Deaths[0]
	if d.PID != victim || d.Role != "client" || d.How != "killed by SIGKILL" || d.OOMKill || d.Phase != "hold" {
		t.Errorf("death %+v: want client pid %d, killed by SIGKILL, not the OOM killer, during hold", d, victim)
	}
	if d.HeldBefore != n || d.HeldAfter == nil {
		t.Fatalf("held before %d (want %d), after %v", d.HeldBefore, n, d.HeldAfter)
	}
	// What was lost is what the victim held, within the few fds a worker keeps for itself.
	if d.Lost != n-*d.HeldAfter || d.Lost+16 < uint64(held) || d.Lost > uint64(held) {
		t.Errorf("lost %d, held after %d; the victim held %d sockets", d.Lost, *d.HeldAfter, held)
	}
	if s.Verified != *d.HeldAfter || s.Limit == nil || s.Limit.At != s.Verified {
		t.Errorf("verified %d, limit %+v: want both at what was held after, %d", s.Verified, s.Limit, *d.HeldAfter)
	}
	x := s.Explanation
	if x == nil || x.Connections != n {
		t.Fatalf("explanation %+v: want its per-connection figures from the peak's %d connections", x, n)
	}
	for _, want := range []string{fmt.Sprintf("client worker %d (pid %d) was killed by SIGKILL during hold (not by the OOM killer", d.Index, victim),
		units.Count(n) + " connections verified before it", fmt.Sprintf("%s lost with it", units.Count(d.Lost))} {
		if !strings.Contains(x.Verdict, want) {
			t.Errorf("the verdict lacks %q:\n%s", want, x.Verdict)
		}
	}
	assertNoWorkers(t, dir)
	assertSysctls(t, before)
	// The victim's sockets, closed by the kernel with a FIN, would hold
	// their ports for tcp_fin_timeout in FIN_WAIT2 or TIME_WAIT.
	out, err := exec.Command("ss", "-Htan", "state", "fin-wait-2", "state", "time-wait", fmt.Sprintf("( sport = :%d or dport = :%d )", port, port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	if left := strings.Count(string(out), "\n"); left > n/1000 {
		t.Errorf("%d sockets of the run left in FIN_WAIT2 or TIME_WAIT, holding their ports", left)
	}
}

// socketFDs counts the sockets in a process's fd table.
func socketFDs(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
