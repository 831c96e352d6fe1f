package analysis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// shortfall says what the clients saw when a run ended short because the
// other side failed them — closed, reset, refused, never answered — by
// kind and count: that, not a host limit the run never came near, is
// what happened. It is empty where the run met a limit of its own host.
func shortfall(r Run) string {
	rl := r.RunLimit
	if r.ServerExited != "" && r.Verified < uint64(r.Requested) {
		// It is gone: whatever the clients saw after, that is what happened.
		s := fmt.Sprintf("%s verified of %s: the server you brought exited (%s), after %s connections", units.Count(r.Verified), units.Count(uint64(r.Requested)), r.ServerExited, units.Count(r.Established))
		if rl != nil && limit.PeerSide(rl.Kind) {
			s += fmt.Sprintf("; the clients then saw %s %s", units.Count(r.Failed[string(rl.Kind)]), rl.Kind)
		}
		return s
	}
	if rl == nil || !limit.PeerSide(rl.Kind) || r.Verified >= uint64(r.Requested) {
		return ""
	}
	who := "the server"
	if r.Brought != nil {
		who = "the server you brought"
	}
	n := func(kind limit.Kind) uint64 { return r.Failed[string(kind)] }
	var what string
	// A server's close() reads as EOF, or as a reset where the client's
	// message was still unread (tcp_close sends RST then, RFC 2525 2.17):
	// which one is a race between the two ends.
	// Only where every connection went so is a reset taken for a close.
	closedAll := (rl.Kind == limit.PeerClosed || rl.Kind == limit.Reset) && n(limit.PeerClosed) > 0 && n(limit.PeerClosed)+n(limit.Reset) >= r.Established
	switch {
	case closedAll && n(limit.Reset) > 0:
		what = fmt.Sprintf("%s closed every connection it accepted (%s) before the run was through with one (%s read EOF, %s a reset: closed with the client's message unread)",
			who, units.Count(r.Established), units.Count(n(limit.PeerClosed)), units.Count(n(limit.Reset)))
	case closedAll:
		what = fmt.Sprintf("%s closed every connection it accepted (%s) before the run was through with one (the clients read EOF)", who, units.Count(r.Established))
	case rl.Kind == limit.PeerClosed:
		what = fmt.Sprintf("%s closed %s of the %s connections it accepted before the run was through with them (the clients read EOF)", who, units.Count(n(limit.PeerClosed)), units.Count(r.Established))
	case rl.Kind == limit.Reset:
		what = fmt.Sprintf("%s reset %s of the %s connections it accepted", who, units.Count(n(limit.Reset)), units.Count(r.Established))
	case rl.Kind == limit.ExchangeTimeout:
		what = fmt.Sprintf("%s accepted %s connections and answered %s of them; %s had no answer within --timeout", who, units.Count(r.Established), units.Count(r.Verified), units.Count(n(limit.ExchangeTimeout)))
	case rl.Kind == limit.Refused:
		what = fmt.Sprintf("connect() was refused %s times after %s connections: nothing listened on the port, or its accept queue overflowed with tcp_abort_on_overflow", units.Count(n(limit.Refused)), units.Count(r.Established))
	case rl.Kind == limit.ConnectTimedOut:
		what = fmt.Sprintf("%s connects timed out after %s connections: their SYNs went unanswered", units.Count(n(limit.ConnectTimedOut)), units.Count(r.Established))
	case rl.Kind == limit.ShortRead || rl.Kind == limit.Mismatch:
		what = fmt.Sprintf("%s answered %s connections wrongly (%s short, %s mismatched)", who, units.Count(n(limit.ShortRead)+n(limit.Mismatch)), units.Count(n(limit.ShortRead)), units.Count(n(limit.Mismatch)))
	default:
		what = fmt.Sprintf("%s connections failed with %s", units.Count(n(rl.Kind)), rl.Kind)
	}
	var others []string
	for kind, c := range r.Failed {
		told := kind == string(rl.Kind) || (closedAll && (kind == string(limit.PeerClosed) || kind == string(limit.Reset)))
		if c > 0 && !told {
			others = append(others, fmt.Sprintf("%s %s", kind, units.Count(c)))
		}
	}
	if len(others) > 0 {
		sort.Strings(others) // map order would change the verdict from run to run
		what += "; also failed: " + strings.Join(others, ", ")
	}
	return fmt.Sprintf("%s verified of %s: %s", units.Count(r.Verified), units.Count(uint64(r.Requested)), what)
}

// serverSaid quotes what a brought server's log says went wrong: the run
// sees what the clients saw, the server's log says why. Empty for the
// run's own server.
func serverSaid(r Run) string {
	l := r.ServerLog
	switch {
	case l != nil && l.ErrorLines > 0:
		var quoted []string
		for _, c := range l.Commonest {
			quoted = append(quoted, fmt.Sprintf("%s× “%s”", units.Count(c.Count), c.Text))
		}
		lines := units.Count(l.ErrorLines) + " error lines, the commonest"
		if l.ErrorLines == 1 {
			lines = "1 error line,"
		}
		return fmt.Sprintf("the server's log (%s) has %s %s", l.Path, lines, strings.Join(quoted, ", "))
	case l != nil:
		return fmt.Sprintf("the server's log (%s) has no error line", l.Path)
	case r.ServerLogElsewhere:
		return "the server's own log says why, if anything does (c10mprobe did not start it, and did not read it)"
	}
	return ""
}
