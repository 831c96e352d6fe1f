package main

import (
	"strings"
	"testing"
)

// Debian names kernels by ABI (6.1.0-57) or by upstream version
// (6.12.118+deb12); the newest is the one with the larger numbers.
func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"linux-image-6.1.0-9-cloud-amd64-unsigned", "linux-image-6.1.0-57-cloud-amd64-unsigned", true},
		{"linux-image-6.1.0-57-cloud-amd64-unsigned", "linux-image-6.1.0-9-cloud-amd64-unsigned", false},
		{"linux-image-6.12.99+deb12-cloud-amd64-unsigned", "linux-image-6.12.118+deb12-cloud-amd64-unsigned", true},
		{"linux-image-6.12.118+deb12-cloud-amd64-unsigned", "linux-image-6.12.118+deb12-cloud-amd64-unsigned", false},
	} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

// An xfail mark turns a failure into xfail and a pass into a failure that
// says to remove the mark; a skip stays a skip.
func TestXfailed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{statusFail, statusXfail}, {statusPass, statusFail}, {statusSkip, statusSkip},
	} {
		r := xfailed(result{Item: "x", Status: c.in, Reason: "why"}, "#22: the fix")
		if r.Status != c.want {
			t.Errorf("%s marked xfail became %s, want %s", c.in, r.Status, c.want)
		}
		if c.in == statusPass && !strings.Contains(r.Reason, "remove the mark") {
			t.Errorf("a passing xfail says %q", r.Reason)
		}
	}
	if r := xfailed(result{Status: statusFail}, ""); r.Status != statusFail {
		t.Errorf("no mark: %s", r.Status)
	}
}

// A skip's reason is testenv's message; one without it is called unlisted.
func TestSkipReason(t *testing.T) {
	lines := []string{"=== RUN   TestX\n", "    x_test.go:12: skip [kernel lacks]: no kprobes\n", "--- SKIP: TestX (0.00s)\n"}
	if got := skipReason(lines); got != "[kernel lacks]: no kprobes" {
		t.Errorf("skipReason = %q", got)
	}
	if got := skipReason([]string{"    x_test.go:3: because\n"}); !strings.HasPrefix(got, "unlisted reason") {
		t.Errorf("a bare t.Skip gave %q", got)
	}
}

// What changed on the guest is named: a value changed, a thing new, a
// thing gone.
func TestStateDiff(t *testing.T) {
	before := state{"sysctl a": "1", "cgroup /x": "present"}
	now := state{"sysctl a": "2", "swap /s": "present"}
	d := strings.Join(before.diff(now), "; ")
	for _, want := range []string{`sysctl a is "2", was "1"`, "cgroup /x gone", "swap /s new"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff %q lacks %q", d, want)
		}
	}
	if d := before.diff(before); len(d) != 0 {
		t.Errorf("no change gave %v", d)
	}
}

// The closing line is the plain "N passed, N failed, N skipped" CI reads;
// an xfail is counted apart.
func TestTableCounts(t *testing.T) {
	tb := makeTable([]string{"6.1", "6.12"}, []result{
		{Kernel: "6.1", Item: "a", Status: statusPass}, {Kernel: "6.12", Item: "a", Status: statusFail},
		{Kernel: "6.1", Item: "b", Status: statusSkip, Reason: "[kernel lacks]: x"}, {Kernel: "6.12", Item: "b", Status: statusXfail},
	})
	if got := tb.counts(); got != "1 passed, 1 failed, 1 skipped" {
		t.Errorf("counts %q", got)
	}
	if tb.xfails() != 1 {
		t.Errorf("xfails %d", tb.xfails())
	}
	if !strings.Contains(tb.text(), "vmtest: 1 passed, 1 failed, 1 skipped\n") {
		t.Errorf("text does not end with the counts:\n%s", tb.text())
	}
}

func TestFailReason(t *testing.T) {
	lines := []string{"=== RUN   TestX\n", "    x_test.go:12: setup log\n", "    servers_test.go:70: 1499 established, 1500 sockets\n", "--- FAIL: TestX (1.00s)\n"}
	if got, want := failReason(lines), "test failed: servers_test.go:70: 1499 established, 1500 sockets"; got != want {
		t.Errorf("failReason = %q, want %q", got, want)
	}
	if got := failReason([]string{"panic: boom\n"}); got != "test failed" {
		t.Errorf("failReason without an assertion = %q", got)
	}
}
