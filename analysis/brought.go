package analysis

// A server the user brought (--target): its own limits, which a server
// that spends a thread or a heap object per connection meets before the
// host's, and its share of the memory.

import (
	"fmt"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// broughtLimits are the brought server's rows of the limits table.
func broughtLimits(r Run) []LimitLine {
	b := r.Brought
	if b == nil {
		return nil
	}
	var out []LimitLine

	fdsPerConn := b.perHeld(b.FDsIdle, b.FDsPeak)
	fd := LimitLine{kind: limit.ServerFds, Name: "server fds",
		Value: fmt.Sprintf("RLIMIT_NOFILE %s of its process holding the most", nofileText(b.NoFile)),
		Used:  fmt.Sprintf("%s fds at the peak, %s idle (%.2f a connection)", units.Count(b.FDsPeak), units.Count(b.FDsIdle), fdsPerConn)}
	switch {
	case b.NoFile == 0:
		fd.Detail = "unlimited"
	case fdsPerConn >= 0.5:
		fd.BindsAt = ptr(uint64(float64(b.NoFile-min(b.NoFile, b.FDsIdle)) / fdsPerConn))
		fd.Detail = "each connection is an fd in the server's process: past it accept() fails with EMFILE, and connections wait in its accept queue; raise it (LimitNOFILE=, ulimit -n)"
	default:
		fd.Detail = "its fds did not grow with the connections"
	}
	out = append(out, fd)

	threadsPerConn := b.perHeld(b.ThreadsIdle, b.ThreadsPeak)
	l := r.Limits
	ceiling := l.ThreadsMax
	if l.PidMax > 0 && (ceiling == 0 || l.PidMax < ceiling) {
		ceiling = l.PidMax
	}
	th := LimitLine{kind: limit.ServerThreads, Name: "server threads",
		Value: fmt.Sprintf("kernel.threads-max %s, kernel.pid_max %s, RLIMIT_NPROC %s", units.Count(uint64(max(0, l.ThreadsMax))), units.Count(uint64(max(0, l.PidMax))), nofileText(b.NProc)),
		Used:  fmt.Sprintf("%s threads at the peak, %s idle (%.2f a connection)", units.Count(b.ThreadsPeak), units.Count(b.ThreadsIdle), threadsPerConn)}
	if threadsPerConn >= 0.5 && ceiling > l.Tasks {
		th.BindsAt = ptr(uint64(float64(ceiling-l.Tasks) / threadsPerConn))
		th.Detail = fmt.Sprintf("a thread per connection: each is a task against kernel.threads-max and pid_max (%s ran before), with a kernel stack of its own; past them the server's next thread fails (EAGAIN)", units.Count(uint64(max(0, l.Tasks))))
	} else {
		th.Detail = "the server does not start a thread per connection"
	}
	out = append(out, th)

	out = append(out, LimitLine{kind: limit.ServerBacklog, Name: "server backlog",
		Value:  fmt.Sprintf("accept queue of %s (its listen() backlog, capped by net.core.somaxconn %s when it listened)", units.Count(uint64(b.Backlog)), units.Count(uint64(max(0, l.Somaxconn)))),
		Used:   fmt.Sprintf("%s waiting at the peak", units.Count(uint64(b.AcceptQueuePeak))),
		Detail: "binds only when the server accepts more slowly than connections arrive: the kernel then drops SYNs (ListenOverflows)"})
	return out
}

func nofileText(v uint64) string {
	if v == 0 {
		return "unlimited"
	}
	return units.Count(v)
}

// broughtUser splits the growth of anonymous memory into the brought
// server's (its processes' Pss_Anon: heap, thread stacks) and the rest
// (the runner's client workers, mostly). ok is false for the built-in server.
func broughtUser(r Run) (server, rest int64, ok bool) {
	b := r.Brought
	if b == nil {
		return 0, 0, false
	}
	server = int64(b.AnonPeak) - int64(b.AnonIdle)
	return server, int64(r.Peak.AnonPages) - int64(r.Idle.AnonPages) - server, true
}
