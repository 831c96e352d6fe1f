package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
)

// guest is the guest side: it runs the plan and reports each row.
type guest struct {
	plan   plan
	out    *os.File // the results port
	doctor doctorReport
}

func guestMain() int {
	// PID 1's shell may leave SIGINT and SIGQUIT ignored, and an ignored
	// signal stays ignored across exec: a handler here gives every program
	// started below the default dispositions, as a login shell would.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGPIPE)
	data, err := os.ReadFile(guestPlan)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest guest:", err)
		return 1
	}
	g := &guest{}
	if err := json.Unmarshal(data, &g.plan); err != nil {
		fmt.Fprintln(os.Stderr, "vmtest guest:", err)
		return 1
	}
	if g.out, err = os.OpenFile(guestResults, os.O_WRONLY, 0); err != nil {
		fmt.Fprintln(os.Stderr, "vmtest guest: results port:", err)
		g.out = os.Stdout
	}
	for _, b := range g.plan.Tests {
		g.runTests(b)
	}
	for _, s := range scenarios() {
		if g.plan.selected(s.name) && (g.plan.Pass == "stock" || s.limited) && (g.plan.Pressure || !s.pressure) {
			g.runScenario(s)
		}
	}
	g.emit(result{Done: true})
	return 0
}

// emit writes one result line to the host and echoes it to the console.
func (g *guest) emit(r result) {
	data, _ := json.Marshal(r)
	g.out.Write(append(data, '\n'))
	g.out.Sync()
	if !r.Done {
		fmt.Printf("vmtest: %-6s %6.1fs %s %s\n", r.Status, r.Seconds, r.Item, r.Reason)
	}
}

// testEvent is one line of test2json.
type testEvent struct {
	Action  string
	Test    string
	Elapsed float64
	Output  string
}

// subtestRows are the tests whose subtests are rows of their own (one a
// probe backend); other subtests show only when they skip or fail.
var subtestRows = map[string]bool{"TestEachBackendCountsMatchSlabinfoAndSockDiag": true}

// testXfail names the tests known to fail in the guest until named work
// lands; an xfail that passes is a failure, so the mark comes off then.
var testXfail = map[string]string{}

// runTests runs one test binary through test2json and reports its tests,
// then whether the guest is as before.
func (g *guest) runTests(b testBatch) {
	before := snapshot()
	start := time.Now()
	logPath := filepath.Join(guestLogs, b.Name+".log")
	log, _ := os.Create(logPath)
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/test2json", "-t", "-p", b.Name,
		filepath.Join(guestTests, b.Name+".test"), "-test.v=test2json", "-test.count=1", "-test.timeout=25m", "-test.run", b.Run)
	cmd.Dir = filepath.Join(guestSrc, b.Name)
	cmd.Env = append(os.Environ(), testenv.GuestEnv+"=1", "C10MPROBE_TEST_BIN_DIR="+guestBin)
	cmd.Stderr = log
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		g.emit(result{Item: b.Name, Status: statusFail, Reason: err.Error()})
		return
	}
	outputs := map[string][]string{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Action == "output" {
			log.WriteString(e.Output)
			outputs[e.Test] = append(outputs[e.Test], e.Output)
			continue
		}
		if e.Test == "" || (e.Action != "pass" && e.Action != "fail" && e.Action != "skip") {
			continue
		}
		parent, _, sub := strings.Cut(e.Test, "/")
		if sub && !subtestRows[parent] && e.Action == "pass" {
			continue
		}
		r := result{Item: b.Name + "/" + e.Test, Status: e.Action, Seconds: e.Elapsed}
		switch e.Action {
		case "skip":
			r.Reason = skipReason(outputs[e.Test])
		case "fail":
			r.Reason = failReason(outputs[e.Test])
			r.Output = tail(strings.Join(outputs[e.Test], ""), 40)
		}
		g.emit(xfailed(r, testXfail[r.Item]))
	}
	err := cmd.Wait()
	if ctx.Err() != nil {
		g.emit(result{Item: b.Name, Status: statusFail, Seconds: time.Since(start).Seconds(), Reason: "timed out", Output: tail(strings.Join(outputs[""], ""), 40)})
	} else if err != nil && len(outputs) == 0 {
		g.emit(result{Item: b.Name, Status: statusFail, Reason: err.Error()})
	}
	g.emitClean(b.Name+": guest as before", before, start)
}

// emitClean reports whether the guest is as it was before an item.
func (g *guest) emitClean(item string, before state, start time.Time) {
	r := result{Item: item, Status: statusPass, Seconds: time.Since(start).Seconds()}
	if diff := before.diff(snapshot()); len(diff) > 0 {
		r.Status, r.Reason = statusFail, "left the guest changed: "+strings.Join(diff, "; ")
	}
	g.emit(r)
}

// xfailed applies an xfail mark: a failure is expected, a pass is not.
func xfailed(r result, mark string) result {
	if mark == "" {
		return r
	}
	switch r.Status {
	case statusFail:
		r.Status, r.Reason = statusXfail, mark+" ("+r.Reason+")"
		r.Output = ""
	case statusPass:
		r.Status, r.Reason = statusFail, "marked xfail but passed: remove the mark ("+mark+")"
	}
	return r
}

// skipReason is testenv's message, or the skip's last line marked unlisted.
func skipReason(lines []string) string {
	msg, ok := testenv.SkipMessage(lines)
	if !ok {
		return "unlisted reason: " + msg
	}
	return msg
}

// assertion is a test's "file_test.go:NN: message" line.
var assertion = regexp.MustCompile(`^\s*\w+_test\.go:\d+: \S`)

// failReason is a failed test's last assertion line, so that the table
// (and the end of a CI log) says why, not only that, it failed: the last,
// since a t.Fatal ends the test and t.Logf lines of its setup come first
// (a helper's log once stood for the failure when the first was taken).
func failReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if assertion.MatchString(lines[i]) {
			msg := strings.TrimSpace(lines[i])
			if len(msg) > 300 {
				msg = msg[:300] + "…"
			}
			return "test failed: " + msg
		}
	}
	return "test failed"
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// command runs a program with a deadline and returns its output and exit
// status (-1 when it could not start or was killed at the deadline).
func command(timeout time.Duration, dir string, name string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	// stderr (progress, logs) also to the console, to follow a slow run.
	cmd.Stdout, cmd.Stderr = &o, io.MultiWriter(&e, os.Stdout)
	err := cmd.Run()
	code = -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode() // -1 when a signal killed it
	}
	if err != nil && cmd.ProcessState == nil {
		code = -1
		e.WriteString(err.Error())
	}
	if ctx.Err() != nil {
		e.WriteString(fmt.Sprintf("\nkilled after %s", timeout))
	}
	return o.String(), e.String(), code
}
