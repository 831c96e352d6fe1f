// Package testenv is how a test says it cannot run on this machine: with
// one of a listed set of reasons, so that CI can list and count the skips,
// and so that a skip for something .ci/run installs fails CI (CI=true)
// instead of hiding a missing install step. Tests call Skip, never t.Skip
// (make lint checks).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Reason is why a test skips: one of the constants below.
type Reason string

const (
	// NotRoot: the root tier (sockets by the tens of thousands, sysctls,
	// eBPF) skips for an ordinary user.
	NotRoot Reason = "not root"
	// KernelLacks: a backend, hook or feature this kernel does not offer
	// (kprobes compiled out, fentry refused, a tracepoint added later).
	KernelLacks Reason = "kernel lacks"
	// NotInstalled: a tool .ci/run installs (the JDK, nginx, Python,
	// Chromium, nft) is missing. With CI=true this fails the test.
	NotInstalled Reason = "not installed"
	// NotInGuest: a tool the VM tier's guest does not carry.
	NotInGuest Reason = "not in the VM guest"
	// HostForbids: what this host keeps from its root (PID 1's
	// namespaces, behind ptrace's access rules).
	HostForbids Reason = "host forbids"
)

// Reasons lists every reason, in the order CI prints them.
var Reasons = []Reason{NotRoot, KernelLacks, NotInstalled, NotInGuest, HostForbids}

// GuestEnv is set by the VM tier's guest for every test binary it runs.
const GuestEnv = "C10MPROBE_VMTEST"

// InGuest reports whether the test runs in the VM tier's guest.
func InGuest() bool { return os.Getenv(GuestEnv) != "" }

// Skip skips the test with a reason from the list and what is missing.
func Skip(t testing.TB, r Reason, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("skip [%s]: %s", r, fmt.Sprintf(format, args...))
	if r == NotInstalled && os.Getenv("CI") == "true" {
		t.Fatalf("%s; .ci/run installs it, so CI fails here", msg)
	}
	t.Skip(msg)
}

// NeedRoot skips the test unless it runs as root; why says what needs it.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, NotRoot, "needs root: %s", why)
	}
}

// NeedTool returns the path of tool, or skips: pkg is the Debian package
// .ci/run installs it from.
func NeedTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if InGuest() {
		Skip(t, NotInGuest, "%s (Debian %s) is not in the guest", tool, pkg)
	}
	Skip(t, NotInstalled, "%s is not installed (Debian %s)", tool, pkg)
	return ""
}

// SkipMessage finds, in a skipped test's output lines, the message Skip
// wrote ("[reason]: what is missing"); a skip that did not come through
// Skip gives its last line and ok false.
func SkipMessage(lines []string) (msg string, ok bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		if _, m, found := strings.Cut(lines[i], "skip ["); found {
			return "[" + strings.TrimSpace(m), true
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "---") && !strings.HasPrefix(l, "===") {
			return l, false
		}
	}
	return "(no message)", false
}
