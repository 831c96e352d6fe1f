package analysis

import (
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/limit"
)

// broughtRun is a thread-per-connection server that held 9,000 of 10,000
// connections, its fds and threads grown by one each.
func broughtRun() Run {
	mem := func(anon uint64) Memory {
		return Memory{MemTotal: 16 << 30, MemFree: 8<<30 - anon, MemAvailable: 8 << 30, AnonPages: anon}
	}
	return Run{
		Requested: 10000, Connections: 10000, Verified: 9000, Server: "127.0.0.1:8080",
		Idle: mem(100 << 20), Peak: mem(100<<20 + 9000*70000),
		Limits:      Limits{ThreadsMax: 100000, PidMax: 32768, Tasks: 768, Somaxconn: 4096, PageSize: 4096, PortLo: 32768, PortHi: 60999},
		AutoSources: true, SourceAddresses: 1,
		Brought: &BroughtServer{Held: 9000, NoFile: 20000, FDsIdle: 10, FDsPeak: 9010, ThreadsIdle: 20, ThreadsPeak: 9020,
			AnonIdle: 50 << 20, AnonPeak: 50<<20 + 9000*64000, Backlog: 4096, AcceptQueuePeak: 1000},
	}
}

func TestBroughtServerRows(t *testing.T) {
	e := Explain(broughtRun())
	rows := map[string]LimitLine{}
	for _, l := range e.Limits {
		rows[l.Name] = l
	}
	// fds: 20,000 less the 10 it holds idle, one a connection.
	if l := rows["server fds"]; l.BindsAt == nil || *l.BindsAt != 19990 {
		t.Errorf("server fds row %+v, want binds at 19,990", l)
	}
	// threads: pid_max (below threads-max) less the 768 tasks before, one a connection.
	if l := rows["server threads"]; l.BindsAt == nil || *l.BindsAt != 32000 {
		t.Errorf("server threads row %+v, want binds at 32,000", l)
	}
	if l, ok := rows["server backlog"]; !ok || l.BindsAt != nil {
		t.Errorf("server backlog row %+v, want present and not binding a count", l)
	}
	if _, ok := rows["client fds per process"]; !ok {
		t.Error("no client fds row")
	}
	if e.BindingLimit != "server fds" || !strings.Contains(e.Verdict, "the server you brought binds first, by its fds, at 19,990") {
		t.Errorf("binding %q: %q", e.BindingLimit, e.Verdict)
	}
	// The server's user space is its own line, all on the server's end.
	var server *LedgerLine
	for i := range e.Ledger {
		if e.Ledger[i].Name == "the server's processes" {
			server = &e.Ledger[i]
		}
	}
	if server == nil || server.BytesTotal != 9000*64000 || server.BytesPerClientSocket != 0 || !server.SplitMeasured {
		t.Errorf("server user line %+v, want %d B on the server's end", server, 9000*64000)
	}
}

// A server whose fds were full at the peak while sock_diag saw it hold no
// connection (it had closed them; a JVM whose socket dispatcher failed):
// its fds bind where its clients' connections were, not at 0.
func TestBroughtServerAtItsLimitHoldingNone(t *testing.T) {
	r := broughtRun()
	r.Connections, r.Verified = 24090, 0
	r.Brought.Held, r.Brought.Established, r.Brought.FDsIdle, r.Brought.FDsPeak = 0, 24090, 30, 20000
	for _, l := range Explain(r).Limits {
		if l.Name == "server fds" && (l.BindsAt == nil || *l.BindsAt != 24090) {
			t.Errorf("server fds row %+v; want binds at the 24,090 its clients held", l)
		}
	}
}

// The limit the run met names the verdict in the runner's own words.
func TestBroughtServerRunLimit(t *testing.T) {
	r := broughtRun()
	r.RunLimit = &Bound{Kind: limit.ServerThreads, At: 9000, Detail: "the server starts 1.0 threads a connection and holds 9,020, at its RLIMIT_NPROC of 9,020"}
	e := Explain(r)
	if e.BindingLimit != "server threads" || e.Verdict != "the server you brought binds first: "+r.RunLimit.Detail {
		t.Errorf("binding %q: %q", e.BindingLimit, e.Verdict)
	}
	if Explain(Run{Connections: 10}).Limits[0].Name == "server fds" {
		t.Error("the built-in server has server rows")
	}
}
