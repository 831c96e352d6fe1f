package analysis

import (
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/limit"
)

// A run the other side failed says what the clients saw first, and names
// a host limit only as where the run would have gone; a run that met its
// own host's limit says nothing of the kind.
func TestShortfallSaysWhatTheClientsSaw(t *testing.T) {
	r := loadInput(t, "memory")
	r.Requested, r.Verified, r.Established = 2000, 0, 2000
	r.Brought = &BroughtServer{}
	for _, c := range []struct {
		kind   limit.Kind
		failed map[string]uint64
		want   string
	}{
		{limit.PeerClosed, map[string]uint64{"eof": 2000}, "0 verified of 2,000: the server you brought closed every connection it accepted (2,000) before the run was through with one"},
		// Every connection closed: some clients' messages had arrived (RST).
		{limit.PeerClosed, map[string]uint64{"eof": 1849, "reset": 151}, "0 verified of 2,000: the server you brought closed every connection it accepted (2,000) before the run was through with one (1,849 read EOF, 151 a reset: closed with the client's message unread)"},
		{limit.PeerClosed, map[string]uint64{"eof": 1500, "reset": 10}, "closed 1,500 of the 2,000 connections it accepted before the run was through with them (the clients read EOF); also failed: reset 10"},
		{limit.ExchangeTimeout, map[string]uint64{"exchange_timeout": 2000}, "accepted 2,000 connections and answered 0 of them; 2,000 had no answer within --timeout"},
		{limit.Refused, map[string]uint64{"connection_refused": 1500}, "connect() was refused 1,500 times after 2,000 connections"},
	} {
		r.RunLimit, r.Failed = &Bound{Kind: c.kind, At: 0}, c.failed
		v := Explain(r).Verdict
		if !strings.Contains(v, c.want) || !strings.Contains(v, "no limit of this host was reached — had the connections been held, ") {
			t.Errorf("%s: verdict %q, want %q first", c.kind, v, c.want)
		}
	}
	r.RunLimit = &Bound{Kind: limit.Ports}
	if v := Explain(r).Verdict; strings.Contains(v, "no limit of this host was reached") {
		t.Errorf("a host limit met, yet: %q", v)
	}
}

// A run a signal ended says so before where it would have gone.
func TestInterruptedRunSaysSoFirst(t *testing.T) {
	r := loadInput(t, "memory")
	r.Requested = 300000
	r.RunLimit = &Bound{Kind: limit.Interrupted, At: r.Connections, Detail: "interrupted by a signal during the connect phase"}
	want := "the run was interrupted by a signal during the connect phase at 20,000 of 300,000 connections, 20,000 of them verified; had it gone on, memory binds first"
	if v := Explain(r).Verdict; !strings.HasPrefix(v, want) {
		t.Errorf("verdict %q, want it to begin %q", v, want)
	}
}

// A --server-cmd that exited is what happened, whatever the clients saw.
func TestShortfallSaysTheServerExited(t *testing.T) {
	r := loadInput(t, "memory")
	r.Requested, r.Verified, r.Established = 2000, 500, 500
	r.ServerExited = "exit status 3 during connect"
	r.RunLimit, r.Failed = &Bound{Kind: limit.Refused}, map[string]uint64{"connection_refused": 1500}
	want := "500 verified of 2,000: the server you brought exited (exit status 3 during connect), after 500 connections; the clients then saw 1,500 connection_refused"
	if v := Explain(r).Verdict; !strings.HasPrefix(v, want) {
		t.Errorf("verdict %q, want it to begin %q", v, want)
	}
}
