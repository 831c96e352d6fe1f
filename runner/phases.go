package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// waitFor waits until done() holds, calling tick about every 100 ms. It gives
// up when the workers' counts stop moving for stallAfter(), asked each time.
func (r *Runner) waitFor(done func(totals) bool, tick func(totals), stallAfter func() time.Duration) (stalled bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	lastMove, last := time.Now(), totals{}
	for {
		cur := r.totals()
		if done(cur) {
			return false
		}
		if cur != last {
			lastMove, last = time.Now(), cur
		} else if time.Since(lastMove) > stallAfter() {
			return true
		}
		select {
		case <-r.notify:
		case <-t.C:
			if tick != nil {
				tick(cur)
			}
		}
	}
}

// SetCensus pauses opening once at connections are open and settled, calls
// fn, and goes on: the probes count the slab exactly up to there (--kmem
// census). Set before Run.
func (r *Runner) SetCensus(at int, fn func(connections uint64) error) {
	r.censusAt, r.onCensus = at, fn
}

// census takes the census (--kmem census) once every client has paused at
// its share and the server has accepted what they opened (2 s at most:
// a handshake the server never takes must not hold the run).
func (r *Runner) census(t totals) {
	if r.censusAt == 0 || r.censused || !t.censusDone {
		return
	}
	if r.censusPaused.IsZero() {
		r.censusPaused = time.Now()
	}
	if t.accepted < t.clientEstablished && !r.cfg.clientOnly() && time.Since(r.censusPaused) < 2*time.Second {
		return
	}
	r.censused = true
	if r.onCensus != nil {
		if err := r.onCensus(t.clientEstablished); err != nil {
			fmt.Fprintf(r.cfg.Log, "warning: the census: %v\n", err)
		}
	}
	r.send(Client, worker.CmdResume)
	r.censusPause = time.Since(r.censusPaused)
}

// paceOpening tells the clients to hold their opening, or to go on.
func (r *Runner) paceOpening(hold bool) {
	if hold {
		r.send(Client, worker.CmdHold)
	} else {
		r.send(Client, worker.CmdRelease)
	}
}

func (r *Runner) connect(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseConnect, start, 0) // the phase begins: the CPU samples' tag
	r.send(Client, worker.CmdConnect)
	lastShow, lastEst := time.Now(), uint64(0)
	tick := func(t totals) {
		if ctx.Err() != nil {
			r.stop(limit.Interrupted, "interrupted by a signal during the connect phase")
		}
		if r.anyDied() {
			r.stop(limit.WorkerDied, "")
		}
		if kind, detail := r.guard(); kind != "" {
			r.stop(kind, detail)
		}
		if r.machine != nil {
			r.machine.Calibrate(t.clientEstablished)
			if hold, changed := r.machine.Pace(time.Now()); changed {
				r.paceOpening(hold)
			}
		}
		r.census(t)
		if now := time.Now(); now.Sub(lastShow) >= 250*time.Millisecond {
			rate := float64(t.clientEstablished-lastEst) / now.Sub(lastShow).Seconds()
			r.progress(PhaseConnect, start, rate)
			lastShow, lastEst = now, t.clientEstablished
		}
	}
	if r.memcap != nil {
		done, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			r.memcap.Watch(done, func() uint64 { return r.totals().clientEstablished }, r.stop)
		}()
		// The watch writes the cap's peak, which the result reads.
		defer func() { close(done); <-exited }()
	}
	// Every handshake accepted; or no server worker accepting any more (each
	// full, or stopped by a limit); or a worker dead: what it held is gone, and
	// the rest of the accept queue may have no server worker left to take it.
	allIn := func(t totals) bool {
		r.census(t) // on every report, not only each tick: the pause is short
		return t.connectDone && (t.accepted >= t.clientEstablished || t.acceptDone || r.anyDied())
	}
	// --rate spaces connections out: a gap the pacing makes is no stall.
	stallAfter := r.cfg.Timeout
	if r.cfg.Rate > 0 {
		stallAfter += time.Duration(float64(r.plan.ClientWorkers) / r.cfg.Rate * float64(time.Second))
	}
	// So is a hold of the smaller machine's pacing.
	stalledAfter := func() time.Duration {
		if r.machine != nil {
			return stallAfter + r.machine.Held()
		}
		return stallAfter
	}
	if r.waitFor(allIn, tick, stalledAfter) {
		t := r.totals()
		if !t.connectDone {
			r.stop(limit.ConnectStalled, fmt.Sprintf("no connection completed for %s (--timeout, and --rate's spacing): SYNs dropped? see listen_overflows", stallAfter.Round(time.Millisecond)))
			r.waitFor(allIn, tick, stalledAfter)
		}
	}
	t := r.totals()
	res.Phases.ConnectSeconds = time.Since(start).Seconds()
	r.mu.Lock()
	if r.limit != nil {
		// A limit binds at what is held, at both ends, once opening has
		// stopped, not at the count when one worker first met it: server
		// workers, which hold the listener too, may take a few fewer.
		r.limit.At = min(t.clientEstablished, t.accepted)
	}
	r.mu.Unlock()
	if t.accepted < t.clientEstablished {
		// Completed handshakes no server worker took from the accept queue.
		res.Failed[worker.FailNotAccepted.String()] += t.clientEstablished - t.accepted
	}
	r.progress(PhaseConnect, start, 0)
}

func (r *Runner) exchange(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseExchange, start, 0)
	r.send("", worker.CmdExchange)
	// On a smaller machine without a payload the exchange runs on while
	// the machine thrashes (that is the experiment), and only the
	// machine's last guard, before the OOM killer, stops it: at once,
	// since a shorter --timeout ends it only once the counts stop moving,
	// and they moved on while the OOM killer came (6.1 in the VM tier).
	machineLast := r.machine != nil && r.cfg.Payload == 0
	guard := r.guard
	if machineLast {
		guard = r.machine.ExchangeGuard
	}
	guarded, cut := false, false
	tick := func(totals) {
		r.progress(PhaseExchange, start, 0)
		if ctx.Err() != nil && r.cfg.Timeout > 2*time.Second {
			// Verify what is held even when interrupted, but do not wait long.
			r.cfg.Timeout = 2 * time.Second
		}
		// --payload can queue 64 MiB a side per connection: the host is
		// guarded here too, and an exchange it stops counts what is missing.
		if guarded {
			return
		}
		kind, detail := guard()
		if kind == "" {
			return
		}
		guarded, cut = true, machineLast
		r.mu.Lock()
		if machineLast && r.limit != nil {
			// The opening's limit stays the run's; this is what followed.
			r.limit.Detail += "; then, during the exchange, " + detail
		} else {
			r.setLimit(kind, detail+" (during the exchange; the hold is skipped)")
		}
		r.guarded = true
		r.mu.Unlock()
		r.cfg.Timeout = min(r.cfg.Timeout, time.Second)
	}
	// With a payload, a connection is through when its client has read
	// the server's too: the peak is sampled when the payload has settled.
	r.waitFor(func(t totals) bool { return cut || t.exchangeDone && (r.cfg.Payload == 0 || t.clientExchangeDone) }, tick, r.timeout)
	// Count what is still missing, and get every worker's final counts.
	r.sync(worker.CmdFinish)
	res.Phases.ExchangeSeconds = time.Since(start).Seconds()
	// The final counts, so that the recorder's last sample of the phase
	// shows every verified connection, not the last periodic report's.
	r.progress(PhaseExchange, start, 0)
}

// hold keeps every connection open for --hold, until a signal, or until a
// worker dies: the OOM killer taking one is a limit the run must name.
func (r *Runner) hold(ctx context.Context, res *Result) {
	start := time.Now()
	r.progress(PhaseHold, start, 0)
	var expired <-chan time.Time
	if r.cfg.Hold > 0 {
		timer := time.NewTimer(r.cfg.Hold)
		defer timer.Stop()
		expired = timer.C
	}
	// A countdown for the progress line, every second.
	second := time.NewTicker(time.Second)
	defer second.Stop()
	// A dialer without --hold holds until its server closes: serve closes
	// all at once, so once the closes began, --timeout without another
	// ends the wait for the rest (a close a full conntrack table or a
	// dead path kept from it; a dialer once waited 25 minutes on 6.1).
	var closed uint64
	var lastClose time.Time
wait:
	for !r.anyDied() {
		select {
		case <-ctx.Done():
			res.Phases.HoldCutShort = true
			break wait
		case <-expired:
			break wait
		case <-second.C:
			r.progress(PhaseHold, start, 0)
		case <-r.notify: // a report, or a worker's exit
		}
		t := r.totals()
		if r.cfg.Mode != ModeDial || t.verified == 0 {
			continue
		}
		if t.peerClosed >= t.verified {
			break // the server closed every connection
		}
		if t.peerClosed > closed {
			closed, lastClose = t.peerClosed, time.Now()
		}
		if closed > 0 && time.Since(lastClose) > r.cfg.Timeout {
			fmt.Fprintf(r.cfg.Log, "dial: the server closed %d of the %d verified connections; no other close came in %v (--timeout): the rest are counted as held\n",
				closed, t.verified, r.cfg.Timeout)
			break
		}
	}
	res.Phases.HoldSeconds = time.Since(start).Seconds()
}

func (r *Runner) close(res *Result) {
	start := time.Now()
	r.progress(PhaseClose, start, 0)
	// Clients first: their RSTs free the server side's sockets, which then
	// close without a FIN exchange.
	for _, role := range []Role{Client, Server} {
		r.send(role, worker.CmdClose)
		r.waitFor(func(totals) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, p := range r.procs {
				if p.role == role && p.state == nil && p.stats.CloseDone == 0 {
					return false
				}
			}
			return true
		}, nil, r.timeout)
	}
	res.Phases.CloseSeconds = time.Since(start).Seconds()
	r.progress(PhaseClose, start, 0)
}

// timeout is --timeout, which a signal during the exchange shortens.
func (r *Runner) timeout() time.Duration { return r.cfg.Timeout }

func (r *Runner) phaseDone(p Phase) error {
	if r.cfg.OnPhase == nil {
		return nil
	}
	return r.cfg.OnPhase(p)
}

func (r *Runner) progress(phase Phase, start time.Time, rate float64) {
	r.mu.Lock()
	r.phaseNow = phase
	r.mu.Unlock()
	if r.cfg.OnProgress == nil {
		return
	}
	t := r.totals()
	var failed uint64
	for _, v := range t.failed {
		failed += v
	}
	p := Progress{Phase: phase, Requested: r.cfg.Conns, Established: t.clientEstablished, Accepted: t.accepted,
		Verified: t.verified, Failed: failed, Rate: rate, Elapsed: time.Since(start)}
	if r.cfg.Mode == ModeServe {
		p.Established = t.accepted // its clients are elsewhere
	}
	if phase == PhaseClose {
		// What is still open: the time series follows the close down.
		p.Established -= min(p.Established, t.clientClosed)
	}
	switch {
	case phase == PhaseHold && r.cfg.Hold > 0:
		p.ETA = max(0, r.cfg.Hold-p.Elapsed)
	case rate > 0 && int(t.clientEstablished) < r.cfg.Conns:
		p.ETA = time.Duration(float64(uint64(r.cfg.Conns)-t.clientEstablished) / rate * float64(time.Second))
	}
	if m, err := procfs.ReadMeminfo(); err == nil {
		p.MemAvailable = m.MemAvailable
	}
	r.cfg.OnProgress(p)
}
