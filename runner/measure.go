package runner

import (
	"fmt"
	"math/bits"
	"net/netip"
	"os"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// maxPerWorker is the most sockets one worker held, and the most fds one
// held for itself.
func (r *Runner) maxPerWorker() (sockets, own uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		sockets, own = max(sockets, p.stats.Established), max(own, uint64(p.stats.OwnFDs))
	}
	return sockets, own
}

// pss sums the proportional set size of the parent and every worker, so the
// program text they share counts once; also by role, the parent apart.
func (r *Runner) pss() (total, client, server, parent uint64) {
	parent, _ = procfs.Pss(os.Getpid())
	for _, p := range r.procs {
		v, err := procfs.Pss(p.pid)
		if err != nil {
			continue
		}
		if p.role == Client {
			client += v
		} else {
			server += v
		}
	}
	return parent + client + server, client, server, parent
}

// countEndpoints asks the kernel, not the workers, which established sockets
// sit on the server port and how many distinct client endpoints they face;
// the same dump records what every socket of the run holds in buffers.
func (r *Runner) countEndpoints(res *Result) error {
	seen := make(map[[4]byte]*[65536 / 64]uint64)
	byDialer := map[netip.Addr]uint64{}
	var onPort uint64
	server := r.connectTo
	err := dumpTCP(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		switch {
		case r.isServerEnd(s.Local):
			res.SocketBuffersBySide.Server += s.Queued()
			if r.cfg.Mode == ModeServe {
				byDialer[s.Remote.Addr()]++
			}
		case s.Remote == server:
			res.SocketBuffersBySide.Client += s.Queued()
			res.PeakSocketBuffered = append(res.PeakSocketBuffered, s.Buffered())
			if r.cfg.Mode == ModeDial {
				// The server is elsewhere: count this host's ends.
				mark(seen, s.Local)
			}
			return
		default:
			return
		}
		res.PeakSocketBuffered = append(res.PeakSocketBuffered, s.Buffered())
		onPort++
		mark(seen, s.Remote)
	})
	if err != nil {
		return err
	}
	var distinct uint64
	for _, m := range seen {
		for _, w := range m {
			distinct += uint64(bits.OnesCount64(w))
		}
	}
	res.ServerSockets = onPort
	res.DistinctClientEndpoints = distinct
	if r.cfg.Mode == ModeServe {
		res.Dialers = dialers(byDialer)
	}
	res.SocketBuffers = res.SocketBuffersBySide.Client + res.SocketBuffersBySide.Server
	return nil
}

// heldAtBothEnds asks sock_diag how many connections to the server port are
// established at both ends: a dead worker's sockets are closed by the
// kernel, and their peers leave ESTABLISHED with them.
func (r *Runner) heldAtBothEnds() (uint64, error) {
	var server, client uint64
	err := dumpTCP(1<<sockdiag.StateEstablished, func(s *sockdiag.Socket) {
		switch {
		case r.isServerEnd(s.Local):
			server++
		case s.Remote == r.connectTo:
			client++
		}
	})
	switch r.cfg.Mode {
	case ModeServe:
		return server, err // the clients are on other hosts
	case ModeDial:
		return client, err
	}
	return min(server, client), err
}

// recountAfterDeath replaces the workers' counts, which a dead worker's
// last report still holds, with what the kernel holds at both ends. At the
// peak, that is also what the run's per-connection costs divide by.
func (r *Runner) recountAfterDeath(atPeak bool) {
	if !r.anyDied() {
		return
	}
	held, err := r.heldAtBothEnds()
	if err != nil {
		fmt.Fprintf(r.cfg.Log, "warning: counting what is held after a worker died: %v\n", err)
		return
	}
	r.mu.Lock()
	r.held = &held
	r.heldAfterDeaths(held)
	if atPeak {
		r.heldAtPeak = &held
	}
	r.mu.Unlock()
}

func (r *Runner) finishResult(res *Result) {
	t := r.totals()
	r.countsInResult(res, t)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accountDeaths(res, t)
	if r.heldVerified != nil {
		// --exchange none: sock_diag is the only verification.
		res.Verified = *r.heldVerified
		if r.held != nil {
			res.Verified = min(res.Verified, *r.held)
		}
	}
	if int(res.Verified) < r.cfg.Conns {
		r.nameLimit(res, t)
		if x := r.serverExit(); x != nil && r.limit != nil && limit.PeerSide(r.limit.Kind) {
			r.limit.Detail = fmt.Sprintf("the server exited (%s) during %s; ", x.Status, x.Phase) + r.limit.Detail
		}
	}
	if r.guarded {
		// Every connection verified, but the host went below its guard.
		res.Limit = r.limit
	}
	if r.cfg.Mode == ModeServe && res.ServerSockets > res.Established {
		res.Unaccepted = res.ServerSockets - res.Established
	}
	res.StoppedBy = limit.Complete
	res.Aborted = r.aborted
	res.Deaths = r.deaths
	res.WorkerExecutable = r.workerExe
	if res.Limit != nil {
		res.StoppedBy = res.Limit.Kind
	}
	if res.Memcap != nil {
		r.memcap.Finish(t.clientEstablished, res.StoppedBy)
	}
	if r.machine != nil {
		res.Machine = r.machine.Result(res.Established, res.StoppedBy)
	}
}

// countsInResult puts the workers' final counts and rates in the result.
func (r *Runner) countsInResult(res *Result, t totals) {
	res.Established = t.clientEstablished
	if r.cfg.Mode == ModeServe {
		// Its clients are elsewhere: what it accepted is what it held.
		res.Established = t.accepted
		res.SourceAddresses = len(res.Dialers)
	}
	if r.heldAtPeak != nil {
		res.Established = min(res.Established, *r.heldAtPeak)
	}
	res.Accepted = t.accepted
	res.ReserveBytes = r.cfg.Reserve
	if vm, err := procfs.ReadVmstat(); err == nil && res.Swap != nil {
		res.Swap.SwapOut, res.Swap.SwapIn = vm["pswpout"]-r.vmStart["pswpout"], vm["pswpin"]-r.vmStart["pswpin"]
	}
	res.Mode, res.PeerClosed = string(r.cfg.Mode), t.peerClosed
	res.SourcePorts.Skipped = t.portsSkipped
	if res.Mode == "" {
		res.Mode = "run"
	}
	if r.cfg.Mode == ModeDial {
		res.Share = &Share{Index: r.cfg.Index, Of: r.cfg.Of, Total: r.total}
	}
	res.Payload = PayloadResult{Bytes: r.cfg.Payload, Unread: r.cfg.Unread, Sent: t.payloadSent, Read: t.payloadRead}
	res.Verified = t.verified
	res.Echoed = t.echoed
	r.serverResult(res)
	for k, v := range t.failed {
		if v > 0 {
			res.Failed[worker.FailKind(k).String()] += v
		}
	}
	// The census pause is the probes', not the machine's: the rates leave it out.
	res.Phases.CensusPauseSeconds = r.censusPause.Seconds()
	if s := res.Phases.ConnectSeconds - res.Phases.CensusPauseSeconds; s > 0 {
		res.ConnectRate = float64(res.Established) / s
	}
	if s := res.Phases.ConnectSeconds - res.Phases.CensusPauseSeconds + res.Phases.ExchangeSeconds; s > 0 {
		res.VerifiedRate = float64(t.verified) / s
	}
}

// accountDeaths takes what died with a worker out of the verified count and
// says so in the limit. r.mu is held.
func (r *Runner) accountDeaths(res *Result, t totals) {
	if r.limit != nil && r.limit.Kind == limit.WorkerDied && r.limit.Detail == "" {
		for _, p := range r.procs {
			if p.state != nil && !p.expectExit {
				r.limit.Detail = r.deathDetail(p)
				break
			}
		}
	}
	if r.held != nil {
		// A worker died: what its last report counted is gone with it.
		res.Verified = min(t.verified, *r.held)
		switch {
		case r.limit != nil && r.limit.Kind == limit.WorkerDied:
			r.limit.At = res.Verified
			r.limit.Detail += fmt.Sprintf("; %s verified connections lost with it (sock_diag: %s held at both ends)",
				units.Count(t.verified-res.Verified), units.Count(*r.held))
		case r.limit != nil:
			// The limit came first; workers died as the run stopped (the OOM
			// killer, on a machine run into swap): what is held is less.
			r.limit.At = min(r.limit.At, res.Verified)
			for _, p := range r.procs {
				if p.state != nil && !p.expectExit {
					r.limit.Detail += "; then " + r.deathDetail(p)
					break
				}
			}
			r.limit.Detail += fmt.Sprintf(", and %s connections were lost (sock_diag: %s held at both ends)",
				units.Count(t.verified-min(t.verified, res.Verified)), units.Count(*r.held))
		}
	}
}

// nameLimit names the limit of a run that verified fewer than it asked
// for: a brought server's own, a stall's cause, or its failures'. r.mu is
// held.
func (r *Runner) nameLimit(res *Result, t totals) {
	// A brought server's own limit explains a stall, or connections
	// it never answered, better than their symptoms do.
	if l, ok := r.serverLimit(res.Verified); ok && (r.limit == nil || symptom(r.limit.Kind)) {
		r.limit = l
	}
	if kind, detail := r.stallCause(); kind != "" && (r.limit == nil || symptom(r.limit.Kind)) {
		r.limit = &Limit{Kind: kind, At: res.Verified, Detail: detail}
	}
	if r.limit == nil {
		r.limit = r.failureLimit(t)
	}
	res.Limit = r.limit
}

// symptom says a limit kind only describes how the run stalled, not why.
func symptom(k limit.Kind) bool {
	switch k {
	case limit.ConnectStalled, limit.AcceptQueue, limit.Unverified:
		return true
	}
	return false
}

// mark sets an endpoint's bit in a per-address port bitmap.
func mark(seen map[[4]byte]*[65536 / 64]uint64, ap netip.AddrPort) {
	a := ap.Addr().As4()
	m := seen[a]
	if m == nil {
		m = new([65536 / 64]uint64)
		seen[a] = m
	}
	p := ap.Port()
	m[p/64] |= 1 << (p % 64)
}
