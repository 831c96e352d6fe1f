package runner

// serve and dial: the two ends of a run on different hosts. serve is the
// built-in server alone, accepting from dialers anywhere and sending each
// connection its number as it arrives; dial is client workers alone,
// answering a serve on another host.

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/worker"
	"golang.org/x/sys/unix"
)

// Dialer is one source address serve saw, and its connections at the peak.
type Dialer struct {
	Addr        string `json:"addr"`
	Connections uint64 `json:"connections"`
	// ClosedInHold is how many of them the dialer closed before serve's
	// hold ended (sock_diag at its end): a dialer that went away.
	ClosedInHold uint64 `json:"closed_in_hold,omitempty"`
}

// Share is a dialer's part of a run spread over dialers.
type Share struct {
	Index int `json:"index"`
	Of    int `json:"of"`
	Total int `json:"total"` // connections over all dialers
}

// serve accepts until Conns are verified, or until connections stop
// coming for --timeout (--wait before the first), or a limit or a signal.
func (r *Runner) serve(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseConnect, start, 0)
	lastShow, lastAcc := time.Now(), uint64(0)
	tick := func(t totals) {
		if ctx.Err() != nil {
			r.stopServing(limit.Interrupted, "interrupted by a signal while serving")
		}
		if r.anyDied() {
			r.stopServing(limit.WorkerDied, "")
		}
		if kind, detail := r.guard(); kind != "" {
			r.stopServing(kind, detail)
		}
		if now := time.Now(); now.Sub(lastShow) >= 250*time.Millisecond {
			r.progress(PhaseConnect, start, float64(t.accepted-lastAcc)/now.Sub(lastShow).Seconds())
			lastShow, lastAcc = now, t.accepted
		}
	}
	done := func(t totals) bool {
		r.mu.Lock()
		stopping := r.stopping
		r.mu.Unlock()
		return int(t.verified) >= r.cfg.Conns || t.acceptDone || stopping
	}
	stallAfter := func() time.Duration {
		if r.totals().accepted == 0 {
			return r.cfg.FirstWait
		}
		return r.cfg.Timeout
	}
	r.send(Server, worker.CmdExchange)
	if r.waitFor(done, tick, stallAfter) {
		if t := r.totals(); t.accepted == 0 {
			r.stopServing(limit.ConnectStalled, fmt.Sprintf("no dialer connected within %s (--wait)", r.cfg.FirstWait))
		} else if kind, detail := r.stallCause(); kind != "" {
			r.stopServing(kind, detail)
		} else {
			r.stopServing(limit.ConnectStalled, fmt.Sprintf("no connection arrived for %s (--timeout) with %s of %s verified: dialers done, or their SYNs dropped on the way (see listen_overflows)",
				r.cfg.Timeout, units.Count(t.verified), units.Count(uint64(r.cfg.Conns))))
		}
	}
	r.send(Server, worker.CmdStop)
	res.Phases.ConnectSeconds = time.Since(start).Seconds()
	t := r.totals()
	r.mu.Lock()
	if r.limit != nil {
		r.limit.At = t.verified
	}
	r.mu.Unlock()
	r.progress(PhaseConnect, start, 0)
}

// stopServing records why serve stopped; its workers stop accepting after.
func (r *Runner) stopServing(kind limit.Kind, detail string) {
	r.mu.Lock()
	r.setLimit(kind, detail)
	r.stopping = true
	r.mu.Unlock()
}

// conntrackSlack: a table this close to nf_conntrack_max is full; entries
// of other flows come and go around it.
const conntrackSlack = 16

// stallCause names what explains connections that stopped arriving, when
// the host can tell: a full conntrack table drops new flows' SYNs
// ("nf_conntrack: table full, dropping packet").
func (r *Runner) stallCause() (limit.Kind, string) {
	count, err1 := procfs.ReadInt("/proc/sys/net/netfilter/nf_conntrack_count")
	max, err2 := procfs.ReadInt("/proc/sys/net/netfilter/nf_conntrack_max")
	if err1 == nil && err2 == nil && max > 0 && count+conntrackSlack >= max {
		return limit.Conntrack, fmt.Sprintf("the conntrack table is full: %s entries of net.netfilter.nf_conntrack_max %s, one per tracked connection; new connections' SYNs are dropped (dmesg: nf_conntrack: table full); raise nf_conntrack_max, or exempt the port from tracking (nft: notrack)",
			units.Count(uint64(count)), units.Count(uint64(max)))
	}
	return "", ""
}

// routeSource is the address this host sends from to reach t: a dialer's
// one source address when none is given and t is not on loopback.
func routeSource(t netip.AddrPort) (netip.Addr, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}, err
	}
	defer unix.Close(fd)
	// A UDP connect sends nothing; it picks the route and its source.
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(t.Port()), Addr: t.Addr().As4()}); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", t, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), nil
}

// dialers sorts the source addresses serve saw into its result.
func dialers(seen map[netip.Addr]uint64) []Dialer {
	out := make([]Dialer, 0, len(seen))
	for a, n := range seen {
		out = append(out, Dialer{Addr: a.String(), Connections: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// dialersAfterHold counts again, by sock_diag at the end of serve's hold,
// what each dialer still holds, where the workers saw dialers close
// connections: a dialer that closed them went away.
func (r *Runner) dialersAfterHold(res *Result) {
	if r.totals().dialerClosed == 0 {
		return
	}
	now := map[netip.Addr]uint64{}
	err := dumpTCP(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		if r.isServerEnd(s.Local) {
			now[s.Remote.Addr()]++
		}
	})
	if err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: counting what each dialer holds after the hold: %v\n", err)
		return
	}
	for i := range res.Dialers {
		d := &res.Dialers[i]
		a, _ := netip.ParseAddr(d.Addr) // as dialers() wrote it
		d.ClosedInHold = d.Connections - min(d.Connections, now[a])
	}
}

// isServerEnd says whether a socket's local end is the run's server: its
// listening address, or any address on its port when it listens on all.
func (r *Runner) isServerEnd(local netip.AddrPort) bool {
	if r.cfg.Mode == ModeServe && r.cfg.Listen.Addr().IsUnspecified() {
		return local.Port() == r.cfg.Listen.Port()
	}
	return local == r.connectTo
}

// serverAddr is the server as the summary names it: where clients connect,
// or for serve the address it listens on (0.0.0.0 for all of them).
// ServerPort is the port every connection of the run lands on: the probes
// count what is on it.
func (r *Runner) ServerPort() uint16 { return r.serverAddr().Port() }

// minCensus is the fewest connections a census counts: at 20,000 the
// slabinfo delta of every cache of the ledger is far above its per-CPU
// slabs' noise (a few hundred objects).
const minCensus = 20000

// CensusSize is how many connections the slab hooks count exactly when
// asked for a census: at least minCensus or a tenth of what this run opens
// (a dialer's share, not the total), all of it when that is the whole run;
// serve, which cannot pause its dialers, counts all.
func (r *Runner) CensusSize() int {
	if r.cfg.Mode == ModeServe {
		return r.cfg.Conns
	}
	return min(r.cfg.Conns, max(minCensus, r.cfg.Conns/10))
}

func (r *Runner) serverAddr() netip.AddrPort {
	if r.cfg.Mode == ModeServe {
		return r.cfg.Listen
	}
	return r.connectTo
}
