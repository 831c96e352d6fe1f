package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
)

// scenario is c10mprobe run as a user runs it, with what it must show.
type scenario struct {
	name    string
	args    []string // after the command; run directories are added
	setup   func() (wrap []string, teardown func(), err error)
	check   func(g *guest, o outcome) error
	xfail   string // named work that makes it pass
	timeout time.Duration
	// limited: it runs on the limited host too, where what it shows
	// depends on the fd limit or the port range.
	limited bool
	// pressure: it drives the guest into swap; with --memory-pressure only.
	pressure bool
	// custom replaces the single command (serve and dial together).
	custom func(g *guest) error
}

// outcome is what a scenario's command did.
type outcome struct {
	stdout, stderr string
	code           int
	dir            string
	summary        summary
	oomKills       uint64 // the kernel's oom_kill count during the run
}

// summary is the part of summary.json the scenarios check.
type summary struct {
	Requested   int               `json:"requested"`
	Established uint64            `json:"established"`
	Verified    uint64            `json:"verified"`
	Failed      map[string]uint64 `json:"failed"`
	StoppedBy   string            `json:"stopped_by"`
	Limit       *struct {
		Kind string `json:"kind"`
		At   uint64 `json:"at"`
	} `json:"limit"`
	Plan struct {
		ClientWorkers int    `json:"client_workers"`
		ServerWorkers int    `json:"server_workers"`
		WorkersBy     string `json:"workers_by"`
	} `json:"plan"`
	Memcap *struct {
		Predicted uint64 `json:"predicted_connections"`
		Actual    uint64 `json:"actual_connections"`
	} `json:"memcap"`
	Machine *struct {
		Predicted uint64 `json:"predicted_connections"` // after calibration
	} `json:"machine"`
	Kernel *struct {
		Attachments []struct {
			Hook    string `json:"hook"`
			Backend string `json:"backend"`
		} `json:"attachments"`
	} `json:"kernel"`
}

// doctorReport is the part of `doctor --json` the scenarios use.
type doctorReport struct {
	Probes struct {
		Forced map[string]string `json:"forced"`
	} `json:"probes"`
}

const exitNotAll = 1

func scenarios() []scenario {
	guards := []string{"swap_full", "min_watermark", "reclaim_exhausted", "memory_pressure", "memory_reserve"}
	return []scenario{
		{name: "doctor", args: []string{"doctor", "--json"}, check: checkDoctor, limited: true},
		{name: "run", args: []string{"run", "--conns", "20000"}, check: verifiedAll(20000), limited: true},
		{name: "run --kmem full", args: []string{"run", "--conns", "20000", "--kmem", "full"}, check: verifiedAll(20000)},
		{name: "run --netns", args: []string{"run", "--conns", "20000", "--netns"}, check: verifiedAll(20000)},
		{name: "run --family inet6", args: []string{"run", "--conns", "20000", "--family", "inet6"}, check: verifiedAll(20000)},
		{name: "run --target (Go server)", args: []string{"run", "--conns", "5000", "--target", "127.0.0.1:19990",
			"--server-cmd", "ulimit -n 12000; exec /bin/goecho 127.0.0.1:19990", "--exchange", "echo"}, check: verifiedAll(5000), limited: true},
		{name: "run --mem-limit", args: []string{"run", "--conns", "60000", "--mem-limit", "160MiB"},
			check: capWithin(0.10)},
		{name: "run --mem-limit, in a nested cgroup beside another process", args: []string{"run", "--conns", "60000", "--mem-limit", "160MiB"},
			setup: nestedCgroup, check: capWithin(0.10)},
		{name: "run --machine-mem, no swap", args: []string{"run", "--conns", "600000", "--machine-mem", "2GiB"},
			check: machineStop(0.9, guards...), timeout: 10 * time.Minute, pressure: true},
		{name: "run --machine-mem --swap --ballast", args: []string{"run", "--conns", "600000", "--machine-mem", "2GiB", "--swap", "512MiB", "--ballast", "256MiB"},
			check: machineStop(0.9, guards...), timeout: 12 * time.Minute, pressure: true},
		{name: "serve and dial across namespaces", custom: serveAndDial, limited: true},
	}
}

func (g *guest) runScenario(s scenario) {
	before := snapshot()
	start := time.Now()
	r := result{Item: s.name, Status: statusPass}
	err := g.scenario(s)
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		r.Status, r.Reason = statusFail, err.Error()
		var of *outcomeFailure
		if errors.As(err, &of) {
			r.Reason, r.Output = of.err.Error(), tail(of.o.stderr, 30)
		}
	}
	if diff := before.diff(snapshot()); len(diff) > 0 && r.Status == statusPass {
		r.Status, r.Reason = statusFail, "left the guest changed: "+strings.Join(diff, "; ")
	} else if len(diff) > 0 {
		r.Reason += "; and left the guest changed: " + strings.Join(diff, "; ")
	}
	g.emit(xfailed(r, s.xfail))
}

type outcomeFailure struct {
	o   outcome
	err error
}

func (f *outcomeFailure) Error() string { return f.err.Error() }

func (g *guest) scenario(s scenario) error {
	if s.custom != nil {
		return s.custom(g)
	}
	var wrap []string
	if s.setup != nil {
		w, teardown, err := s.setup()
		if err != nil {
			return fmt.Errorf("setting up: %w", err)
		}
		defer teardown()
		wrap = w
	}
	o := g.c10mprobe(s, wrap)
	if err := s.check(g, o); err != nil {
		return &outcomeFailure{o, err}
	}
	return nil
}

// c10mprobe runs one command of the tool with its own run directory.
func (g *guest) c10mprobe(s scenario, wrap []string) outcome {
	dir := filepath.Join("/root/runs", strings.NewReplacer(" ", "_", "/", "_").Replace(s.name))
	args := append([]string{}, s.args...)
	if args[0] == "run" {
		args = append(args, "--out", dir)
	}
	argv := append(append(wrap, "/bin/c10mprobe"), args...)
	timeout := s.timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	oom := vmstat("oom_kill")
	o := outcome{dir: dir}
	o.stdout, o.stderr, o.code = command(timeout, "/root", argv[0], argv[1:]...)
	o.oomKills = vmstat("oom_kill") - oom
	if o.code < 0 && args[0] == "run" {
		// Killed at its deadline: put the host back as a user would.
		_, rerr, _ := command(2*time.Minute, "/root", "/bin/c10mprobe", "restore", dir)
		o.stderr += "\n--- killed at the deadline; restore:\n" + rerr
	}
	if data, err := os.ReadFile(filepath.Join(dir, "summary.json")); err == nil {
		json.Unmarshal(data, &o.summary)
	}
	os.WriteFile(filepath.Join(guestLogs, filepath.Base(dir)+".log"), []byte(o.stdout+"\n--- stderr\n"+o.stderr), 0o644)
	return o
}

func vmstat(key string) uint64 {
	v, _ := procfs.ReadVmstat()
	return v[key]
}

func checkDoctor(g *guest, o outcome) error {
	if o.code != 0 {
		return fmt.Errorf("doctor exited %d", o.code)
	}
	if err := json.Unmarshal([]byte(o.stdout), &g.doctor); err != nil {
		return fmt.Errorf("doctor --json: %w", err)
	}
	for _, b := range []string{"fentry", "kprobe", "raw_tracepoint", "tracepoint"} {
		if g.doctor.Probes.Forced[b] == "ok" {
			return nil
		}
	}
	return fmt.Errorf("no backend attaches here: %v", g.doctor.Probes.Forced)
}

// verifiedAll: exit 0, every connection verified, and tcp_sendmsg through
// fentry wherever doctor found fentry loads.
func verifiedAll(n uint64) func(*guest, outcome) error {
	return func(g *guest, o outcome) error {
		s := o.summary
		if o.code != 0 || s.Verified != n {
			return fmt.Errorf("exit %d, %d of %d verified; want 0 and all", o.code, s.Verified, n)
		}
		if g.doctor.Probes.Forced["fentry"] == "ok" && s.Kernel != nil {
			for _, a := range s.Kernel.Attachments {
				if a.Hook == "tcp_sendmsg" && a.Backend != "fentry" {
					return fmt.Errorf("tcp_sendmsg attached with %s where fentry loads", a.Backend)
				}
			}
		}
		return nil
	}
}

// stoppedBy: the run ended short by one of kinds, with no OOM kill and
// every connection it held verified.
func stoppedBy(kinds ...string) func(*guest, outcome) error {
	return func(g *guest, o outcome) error {
		s := o.summary
		if o.code != exitNotAll || s.Limit == nil {
			return fmt.Errorf("exit %d, limit %v; want %d and a limit", o.code, s.Limit, exitNotAll)
		}
		ok := false
		for _, k := range kinds {
			ok = ok || s.Limit.Kind == k
		}
		if !ok {
			return fmt.Errorf("stopped by %s at %d, want %s", s.Limit.Kind, s.Limit.At, strings.Join(kinds, " or "))
		}
		if o.oomKills > 0 {
			return fmt.Errorf("the OOM killer killed %d processes", o.oomKills)
		}
		if s.Verified != s.Established || s.Verified == 0 {
			return fmt.Errorf("%d verified of %d held", s.Verified, s.Established)
		}
		return nil
	}
}

// machineStop: stopped by a guard, as stoppedBy, at no less than share of
// where the run's calibrated prediction said memory runs out: a guard
// that stops early does not pass.
func machineStop(share float64, guards ...string) func(*guest, outcome) error {
	return func(g *guest, o outcome) error {
		if err := stoppedBy(guards...)(g, o); err != nil {
			return err
		}
		m := o.summary.Machine
		if m == nil || m.Predicted == 0 {
			return fmt.Errorf("no machine prediction in the summary")
		}
		if got := float64(o.summary.Established) / float64(m.Predicted); got < share {
			return fmt.Errorf("stopped by %s at %d, %.0f %% of the predicted %d", o.summary.Limit.Kind, o.summary.Established, 100*got, m.Predicted)
		}
		return nil
	}
}

// capWithin: stopped by the memory cap, every held connection verified, at
// a count within share of the prediction the run printed.
func capWithin(share float64) func(*guest, outcome) error {
	return func(g *guest, o outcome) error {
		if err := stoppedBy("memcap")(g, o); err != nil {
			return err
		}
		m := o.summary.Memcap
		if m == nil || m.Predicted == 0 {
			return fmt.Errorf("no memcap prediction in the summary")
		}
		if off := float64(m.Actual)/float64(m.Predicted) - 1; off > share || off < -share {
			return fmt.Errorf("held %d, predicted %d (%+.1f %%)", m.Actual, m.Predicted, 100*off)
		}
		return nil
	}
}

// nestedCgroup starts the tool as a systemd session or service starts it: in
// a cgroup of its own that holds another process and has no controller
// delegated.
func nestedCgroup() ([]string, func(), error) {
	const dir = "/sys/fs/cgroup/vmtest-session.scope"
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, err
	}
	other := exec.Command("/bin/sleep", "3600")
	if err := other.Start(); err != nil {
		os.Remove(dir)
		return nil, nil, err
	}
	teardown := func() {
		other.Process.Kill()
		other.Wait()
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := os.WriteFile(dir+"/cgroup.procs", []byte(fmt.Sprint(other.Process.Pid)), 0); err != nil {
		teardown()
		return nil, nil, err
	}
	// The tool joins it before it starts: sh moves itself, then execs.
	return []string{"/bin/sh", "-c", "echo $$ > " + dir + "/cgroup.procs && exec \"$@\"", "sh"}, teardown, nil
}

// serveAndDial: serve in one network namespace, dial from another over a
// veth pair, probes on, as two machines would run it.
func serveAndDial(g *guest) error {
	const n = 10000
	ip := func(args ...string) error {
		if out, err := exec.Command("/bin/ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	defer ip("netns", "del", "vmt-serve")
	defer ip("netns", "del", "vmt-dial")
	for _, args := range [][]string{
		{"netns", "add", "vmt-serve"}, {"netns", "add", "vmt-dial"},
		{"-n", "vmt-serve", "link", "add", "s0", "type", "veth", "peer", "name", "d0", "netns", "vmt-dial"},
		{"-n", "vmt-serve", "addr", "add", "198.18.0.1/24", "dev", "s0"},
		{"-n", "vmt-dial", "addr", "add", "198.18.0.2/24", "dev", "d0"},
		{"-n", "vmt-serve", "link", "set", "s0", "up"}, {"-n", "vmt-dial", "link", "set", "d0", "up"},
		{"-n", "vmt-serve", "link", "set", "lo", "up"}, {"-n", "vmt-dial", "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	serve := exec.Command("/bin/ip", "netns", "exec", "vmt-serve", "/bin/c10mprobe", "serve", "--listen", "0.0.0.0:9999",
		"--conns", fmt.Sprint(n), "--wait", "120s", "--out", "/root/runs/serve")
	var serr strings.Builder
	serve.Stderr = &serr
	if err := serve.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ := exec.Command("/bin/ip", "netns", "exec", "vmt-serve", "/bin/ss", "-Htln", "sport = :9999").Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			break
		}
	}
	_, derr, dcode := command(5*time.Minute, "/root", "/bin/ip", "netns", "exec", "vmt-dial", "/bin/c10mprobe", "dial",
		"--target", "198.18.0.1:9999", "--conns", fmt.Sprint(n), "--src", "198.18.0.2", "--out", "/root/runs/dial")
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		serve.Process.Signal(syscall.SIGINT)
		<-done
	}
	var errs []string
	for _, side := range []struct {
		name, dir, stderr string
		code              int
	}{{"serve", "/root/runs/serve", serr.String(), serve.ProcessState.ExitCode()}, {"dial", "/root/runs/dial", derr, dcode}} {
		var s summary
		data, _ := os.ReadFile(filepath.Join(side.dir, "summary.json"))
		json.Unmarshal(data, &s)
		if side.code != 0 || s.Verified != n {
			errs = append(errs, fmt.Sprintf("%s: exit %d, %d of %d verified: %s", side.name, side.code, s.Verified, n, tail(side.stderr, 5)))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
