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
	switch rl.Kind {
	case limit.PeerClosed:
		what = fmt.Sprintf("%s closed %s of the %s connections it accepted before the run was through with them (the clients read EOF)", who, units.Count(n(limit.PeerClosed)), units.Count(r.Established))
		if n(limit.PeerClosed) >= r.Established {
			what = fmt.Sprintf("%s closed every connection it accepted (%s) before the run was through with one (the clients read EOF)", who, units.Count(r.Established))
		}
	case limit.Reset:
		what = fmt.Sprintf("%s reset %s of the %s connections it accepted", who, units.Count(n(limit.Reset)), units.Count(r.Established))
	case limit.ExchangeTimeout:
		what = fmt.Sprintf("%s accepted %s connections and answered %s of them; %s had no answer within --timeout", who, units.Count(r.Established), units.Count(r.Verified), units.Count(n(limit.ExchangeTimeout)))
	case limit.Refused:
		what = fmt.Sprintf("connect() was refused %s times after %s connections: nothing listened on the port, or its accept queue overflowed with tcp_abort_on_overflow", units.Count(n(limit.Refused)), units.Count(r.Established))
	case limit.ConnectTimedOut:
		what = fmt.Sprintf("%s connects timed out after %s connections: their SYNs went unanswered", units.Count(n(limit.ConnectTimedOut)), units.Count(r.Established))
	case limit.ShortRead, limit.Mismatch:
		what = fmt.Sprintf("%s answered %s connections wrongly (%s short, %s mismatched)", who, units.Count(n(limit.ShortRead)+n(limit.Mismatch)), units.Count(n(limit.ShortRead)), units.Count(n(limit.Mismatch)))
	default:
		what = fmt.Sprintf("%s connections failed with %s", units.Count(n(rl.Kind)), rl.Kind)
	}
	var others []string
	for kind, c := range r.Failed {
		if c > 0 && kind != string(rl.Kind) {
			others = append(others, fmt.Sprintf("%s %s", kind, units.Count(c)))
		}
	}
	if len(others) > 0 {
		sort.Strings(others) // map order would change the verdict from run to run
		what += "; also failed: " + strings.Join(others, ", ")
	}
	return fmt.Sprintf("%s verified of %s: %s", units.Count(r.Verified), units.Count(uint64(r.Requested)), what)
}
