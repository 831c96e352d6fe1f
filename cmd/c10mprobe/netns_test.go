package main

// Many machines on one: network namespaces made by the test, a server's and
// dialers', joined by veth pairs with addresses from 198.18.0.0/15 (the
// benchmarking range, RFC 2544), torn down on every exit.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/record"
)

// topology is a server namespace and dialer namespaces, dialer i on its
// own link 198.18.i.0/24: the server 198.18.i.1, the dialer .2 and .3.
type topology struct {
	server  string
	dialers []string
}

func (tp topology) serverAddr(i int) string { return fmt.Sprintf("198.18.%d.1", i+1) }
func (tp topology) dialerSrc(i int) string {
	return fmt.Sprintf("198.18.%d.2,198.18.%d.3", i+1, i+1)
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newTopology makes the namespaces and links; t.Cleanup deletes them (and
// so the veths in them) and checks nothing of them is left.
func newTopology(t *testing.T, dialers int) topology {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	tag := fmt.Sprintf("c10t%d", os.Getpid()%100000)
	tp := topology{server: tag + "s"}
	t.Cleanup(func() {
		for _, ns := range append([]string{tp.server}, tp.dialers...) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if bytes.Contains(out, []byte(tag)) {
			t.Errorf("namespaces left after the test:\n%s", out)
		}
	})
	ip(t, "netns", "add", tp.server)
	ip(t, "-n", tp.server, "link", "set", "lo", "up")
	for i := range dialers {
		d := fmt.Sprintf("%sd%d", tag, i)
		tp.dialers = append(tp.dialers, d)
		ip(t, "netns", "add", d)
		sv, dv := fmt.Sprintf("s%d", i), fmt.Sprintf("d%d", i)
		ip(t, "-n", tp.server, "link", "add", sv, "type", "veth", "peer", "name", dv, "netns", d)
		ip(t, "-n", tp.server, "addr", "add", tp.serverAddr(i)+"/24", "dev", sv)
		for _, a := range strings.Split(tp.dialerSrc(i), ",") {
			ip(t, "-n", d, "addr", "add", a+"/24", "dev", dv)
		}
		ip(t, "-n", tp.server, "link", "set", sv, "up")
		ip(t, "-n", d, "link", "set", dv, "up")
		ip(t, "-n", d, "link", "set", "lo", "up")
	}
	return tp
}

// inNS starts c10mprobe COMMAND in namespace ns, its run directory under the
// test's temporary directory.
func inNS(t *testing.T, ns, command string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), command)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, toolBinary, command, "--out", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stdout, &stderr, dir
}

// serveAndDial runs one serve and a dial in each dialer namespace, and
// returns their results: serve's first.
func serveAndDial(t *testing.T, tp topology, conns int, serveArgs, dialArgs []string) []result {
	t.Helper()
	sc, so, se, sdir := inNS(t, tp.server, "serve", append([]string{"--listen", "0.0.0.0:19990", "--conns", fmt.Sprint(conns), "--no-bpf", "--wait", "60s"}, serveArgs...)...)
	// A dialer's refused connects are failures: it starts once serve listens.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("ip", "netns", "exec", tp.server, "ss", "-Htln", "sport = :19990").Output()
		if len(bytes.TrimSpace(out)) > 0 {
			break
		}
	}
	type dialer struct {
		cmd      *exec.Cmd
		out, err *bytes.Buffer
		dir      string
	}
	var ds []dialer
	for i, ns := range tp.dialers {
		c, o, e, dir := inNS(t, ns, "dial", append([]string{"--target", tp.serverAddr(i) + ":19990", "--conns", fmt.Sprint(conns),
			"--index", fmt.Sprint(i), "--of", fmt.Sprint(len(tp.dialers)), "--src", tp.dialerSrc(i), "--no-bpf"}, dialArgs...)...)
		ds = append(ds, dialer{c, o, e, dir})
	}
	out := []result{finish(t, sc, so, se, sdir)}
	for _, d := range ds {
		out = append(out, finish(t, d.cmd, d.out, d.err, d.dir))
	}
	return out
}

func summaryOf(t *testing.T, r result) record.Summary {
	t.Helper()
	if _, err := os.Stat(filepath.Join(r.dir, "summary.json")); err != nil {
		t.Fatalf("no summary in %s (exit %d)\nstdout:\n%s\nstderr:\n%s", r.dir, r.code, r.stdout, r.stderr)
	}
	return readSummary(t, r)
}

// TestServeDialAcrossNamespaces: 50,000 connections from two dialer
// namespaces to one server port, every one verified at the server, which
// names its dialers; each dialer holds its share until the server closes.
func TestServeDialAcrossNamespaces(t *testing.T) {
	before := sysctls(t)
	tp := newTopology(t, 2)
	const conns = 50000
	rs := serveAndDial(t, tp, conns, nil, nil)
	srv := summaryOf(t, rs[0])
	if rs[0].code != 0 || srv.Result.Verified != conns || srv.Result.Mode != "serve" {
		t.Fatalf("serve: exit %d, %d verified, mode %q; want 0, %d, serve\nstderr:\n%s", rs[0].code, srv.Result.Verified, srv.Result.Mode, conns, rs[0].stderr)
	}
	// The server's view of its dialers, from sock_diag at its peak.
	perNS := map[string]uint64{}
	var total uint64
	for _, d := range srv.Result.Dialers {
		perNS[d.Addr[:len("198.18.1")]] += d.Connections
		total += d.Connections
	}
	if len(srv.Result.Dialers) != 4 || total != conns || perNS["198.18.1"] != conns/2 || perNS["198.18.2"] != conns/2 {
		t.Errorf("serve's dialers %+v, want 4 addresses, %d from each namespace", srv.Result.Dialers, conns/2)
	}
	if srv.Result.ServerSockets != conns || srv.Result.DistinctClientEndpoints != conns {
		t.Errorf("serve: %d sockets on its port, %d distinct endpoints (sock_diag); want %d", srv.Result.ServerSockets, srv.Result.DistinctClientEndpoints, conns)
	}
	for i, r := range rs[1:] {
		s := summaryOf(t, r)
		sh := s.Result.Share
		if r.code != 0 || s.Result.Mode != "dial" || sh == nil || sh.Index != i || sh.Of != 2 || sh.Total != conns {
			t.Errorf("dialer %d: exit %d, mode %q, share %+v\nstderr:\n%s", i, r.code, s.Result.Mode, sh, r.stderr)
			continue
		}
		if s.Result.Verified != conns/2 || s.Result.PeerClosed != conns/2 {
			t.Errorf("dialer %d: %d verified, %d closed by the server; want %d of each", i, s.Result.Verified, s.Result.PeerClosed, conns/2)
		}
	}
	assertSysctls(t, before)
}

// TestConntrackBinds: the server's namespace tracks its connections (an
// nftables rule uses conntrack) and nf_conntrack_max is lowered for the
// test (journaled, restored): serve names conntrack as what bound.
func TestConntrackBinds(t *testing.T) {
	tp := newTopology(t, 1)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables); .ci/run installs it")
	}
	for _, args := range [][]string{
		{"add", "table", "inet", "c10t"},
		{"add", "chain", "inet", "c10t", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "c10t", "in", "ct", "state", "established,related", "accept"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", tp.server, "nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
	}
	// A global sysctl; each namespace's table counts against it.
	const max = 3000
	j := sysctl.NewJournal(filepath.Join(t.TempDir(), "journal.json"))
	t.Cleanup(func() {
		if err := j.Restore(); err != nil {
			t.Errorf("restoring nf_conntrack_max: %v", err)
		}
	})
	if _, err := j.Set("net.netfilter.nf_conntrack_max", fmt.Sprint(max)); err != nil {
		t.Fatal(err)
	}
	rs := serveAndDial(t, tp, 2*max, []string{"--timeout", "3s"}, []string{"--timeout", "3s"})
	srv := summaryOf(t, rs[0])
	l := srv.Result.Limit
	if rs[0].code != exitNotAll || l == nil || l.Kind != limit.Conntrack {
		t.Fatalf("serve: exit %d, limit %+v; want %d and %s\nstderr:\n%s", rs[0].code, l, exitNotAll, limit.Conntrack, rs[0].stderr)
	}
	if l.At > max || l.At < max*9/10 || srv.Result.Verified != l.At {
		t.Errorf("conntrack bound at %d with %d verified; want both just under %d", l.At, srv.Result.Verified, max)
	}
	if srv.Result.ConntrackPeak < max-conntrackSlackTest {
		t.Errorf("nf_conntrack_count %d at the peak, want the table full (%d)", srv.Result.ConntrackPeak, max)
	}
	if e := srv.Explanation; e == nil || e.BindingLimit != "conntrack" || !strings.Contains(e.Verdict, "conntrack") {
		t.Errorf("explanation %+v, want conntrack binding", e)
	}
}

// conntrackSlackTest is how far below nf_conntrack_max a full table may
// read: entries of other flows come and go.
const conntrackSlackTest = 16
