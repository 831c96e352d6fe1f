package main

import (
	"fmt"
	"strings"
	"testing"
)

// A --server-cmd that exits in the middle of the run (status 3 after 500
// accepts): the summary says how and when, it has no peak it did not
// have, and the verdict says first that it exited.
func TestServerThatExitsIsNoticed(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	before := sysctls(t)
	r := run(t, "--conns", "2000", "--target", "127.0.0.1:19976", "--no-bpf", "--exchange", "none", "--timeout", "5s",
		"--server-cmd", fmt.Sprintf("exec %s testdata/servers/exits_after.py 127.0.0.1 19976 500", py))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	x := s.Result.Server.Exited
	if x == nil || x.Status != "exit status 3" {
		t.Fatalf("server.exited %+v, want exit status 3", x)
	}
	if p := s.Result.Server.Peak; p != nil && s.Result.Server.Idle != nil && *p == *s.Result.Server.Idle {
		t.Errorf("server.peak %+v is its idle sample", p)
	}
	if s.Result.Verified >= 2000 {
		t.Errorf("verified %d of 2,000 from a server that exited after 500", s.Result.Verified)
	}
	if e := s.Explanation; e == nil || !strings.Contains(e.Verdict, "the server you brought exited (exit status 3 during ") {
		t.Errorf("verdict does not say the server exited: %+v", e)
	}
	assertSysctls(t, before)
}

// A server that closes every connection it accepts: with --exchange none
// or echo the clients read EOF, each counted, and the verdict says so
// before any host limit.
func TestServerThatClosesEveryConnectionIsNamed(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	for _, exchange := range []string{"none", "echo"} {
		r := run(t, "--conns", "2000", "--target", "127.0.0.1:19977", "--no-bpf", "--exchange", exchange, "--timeout", "5s",
			"--server-cmd", fmt.Sprintf("exec %s testdata/servers/closes_at_accept.py 19977", py))
		if r.code != 1 {
			t.Fatalf("--exchange %s: exit %d, want 1\n%s\n%s", exchange, r.code, r.stdout, r.stderr)
		}
		s := readSummary(t, r)
		// A client whose message arrived before the close reads a reset
		// (tcp_close with unread data), the rest EOF: a race.
		closed := s.Failed["eof"] + s.Failed["reset"]
		if s.Verified != 0 || closed != 2000 || s.Failed["eof"] == 0 || s.Limit == nil || (s.Limit.Kind != "eof" && s.Limit.Kind != "reset") {
			t.Errorf("--exchange %s: verified %d, failed %v, limit %+v; want 0, eof and reset 2000 together, eof or reset", exchange, s.Verified, s.Failed, s.Limit)
		}
		if e := s.Explanation; e == nil || !strings.HasPrefix(e.Verdict, "0 verified of 2,000: the server you brought closed every connection it accepted (2,000)") {
			t.Errorf("--exchange %s: verdict %+v", exchange, e)
		}
	}
}

// A server that accepts every connection and never reads: the clients'
// messages go unanswered, and the verdict says so first, before where a
// host limit would be.
func TestServerThatNeverReadsIsNamed(t *testing.T) {
	needRoot(t)
	py := need(t, "python3", "python3")
	r := run(t, "--conns", "2000", "--target", "127.0.0.1:19978", "--no-bpf", "--exchange", "echo", "--timeout", "3s",
		"--server-cmd", fmt.Sprintf("exec %s testdata/servers/never_reads.py 19978", py))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := readSummary(t, r)
	if s.Verified != 0 || s.Failed["exchange_timeout"] != 2000 || s.Limit == nil || s.Limit.Kind != "exchange_timeout" {
		t.Errorf("verified %d, failed %v, limit %+v; want 0, 2,000 exchange_timeout", s.Verified, s.Failed, s.Limit)
	}
	if e := s.Explanation; e == nil || !strings.HasPrefix(e.Verdict, "0 verified of 2,000: the server you brought accepted 2,000 connections and answered 0 of them; 2,000 had no answer within --timeout") ||
		!strings.Contains(e.Verdict, "no limit of this host was reached") {
		t.Errorf("verdict %+v", e)
	}
}
