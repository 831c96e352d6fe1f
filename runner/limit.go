package runner

import (
	"fmt"
	"net/netip"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/worker"
	"golang.org/x/sys/unix"
)

// Limit is the first limit that bound, and at how many connections.
type Limit struct {
	Kind   limit.Kind `json:"kind"`
	At     uint64     `json:"at"`
	Detail string     `json:"detail"`
}

// setLimit records the first limit; later ones are the same limit's echoes.
// r.mu must be held.
func (r *Runner) setLimit(kind limit.Kind, detail string) {
	if r.limit == nil {
		r.limit = &Limit{Kind: kind, Detail: detail}
		r.limit.At = r.totalsLocked().clientEstablished
	}
}

// stop ends the connect phase early for the named reason.
func (r *Runner) stop(kind limit.Kind, detail string) {
	r.mu.Lock()
	r.setLimit(kind, detail)
	already := r.stopping
	r.stopping = true
	r.mu.Unlock()
	if !already {
		r.send(Client, worker.CmdStop)
	}
}

// limitFor names the limit behind a worker's first failure.
func (r *Runner) limitFor(p *proc, s *worker.Stats) (limit.Kind, string) {
	k := worker.FailKind(s.FirstFail - 1)
	errno := unix.Errno(s.FirstFailErrno)
	who := fmt.Sprintf("%s worker %d", p.role, p.index)
	switch k {
	case worker.FailEMFILE:
		return limit.Fds, fmt.Sprintf("%s: %v after %d sockets (RLIMIT_NOFILE %d per process); raise the hard limit (needs CAP_SYS_RESOURCE) or allow more workers (--max-workers)",
			who, errno, s.Established, r.plan.NoFile)
	case worker.FailENFILE:
		return limit.FileMax, fmt.Sprintf("%s: %v: fs.file-max (%d) open files system-wide; raise fs.file-max", who, errno, r.host.FileMax)
	case worker.FailPorts:
		src := netip.AddrFrom4(s.FirstFailSrc)
		held := ""
		if r.plan.PortsHeld > 0 {
			held = fmt.Sprintf(", less the %s other programs' sockets held when the run began: a port bound by bind() is skipped on every address", units.Count(int64(r.plan.PortsHeld)))
		}
		return limit.Ports, fmt.Sprintf("connect: no free source ports on %s, the last of %d source addresses (%s per address with ip_local_port_range %d–%d%s); use more --src addresses or widen the range",
			src, len(r.plan.Sources), units.Count(int64(r.plan.PortsPerSource)), r.tuning.PortLo, r.tuning.PortHi, held)
	case worker.FailAddr:
		return limit.SourceAddress, fmt.Sprintf("bind: %v for source %s: it is not an address of this host", errno, netip.AddrFrom4(s.FirstFailSrc))
	case worker.FailEpollWatches:
		return limit.EpollWatches, fmt.Sprintf("%s: epoll_ctl: %v after %d sockets: fs.epoll.max_user_watches (%s) epoll watches for all of one user's processes, one per socket; raise fs.epoll.max_user_watches",
			who, errno, s.Established, units.Count(r.host.EpollMaxWatches))
	case worker.FailNoMem:
		return limit.Memory, fmt.Sprintf("%s: %v: the kernel could not allocate socket memory", who, errno)
	default:
		return limit.Other, fmt.Sprintf("%s: %v (errno %d) after %d sockets: no limit c10mprobe knows explains it", who, errno, int(errno), s.Established)
	}
}

// failureKinds is the limit each kind of failure names: a resource's
// failure its limit, the rest (refused, reset, timed out, a wrong echo)
// kinds of their own.
var failureKinds = [worker.NumFailKinds]limit.Kind{
	worker.FailEMFILE:       limit.Fds,
	worker.FailENFILE:       limit.FileMax,
	worker.FailPorts:        limit.Ports,
	worker.FailAddr:         limit.SourceAddress,
	worker.FailNoMem:        limit.Memory,
	worker.FailEpollWatches: limit.EpollWatches,
	worker.FailTimedOut:     limit.ConnectTimedOut,
	worker.FailRefused:      limit.Refused,
	worker.FailReset:        limit.Reset,
	worker.FailEOF:          limit.PeerClosed,
	worker.FailShortRead:    limit.ShortRead,
	worker.FailMismatch:     limit.Mismatch,
	worker.FailTimeout:      limit.ExchangeTimeout,
	worker.FailPayloadShort: limit.PayloadShort,
	worker.FailNotAccepted:  limit.AcceptQueue,
	worker.FailWorkerDied:   limit.WorkerDied,
	worker.FailOther:        limit.Other,
}

// failureLimit names the commonest failure when no limit stopped the opening.
func (r *Runner) failureLimit(t totals) *Limit {
	var worst worker.FailKind
	for k := range t.failed {
		if t.failed[k] > t.failed[worst] {
			worst = worker.FailKind(k)
		}
	}
	if t.failed[worst] == 0 && t.accepted >= t.clientEstablished {
		return &Limit{Kind: limit.Unverified, At: t.clientEstablished, Detail: "connections were held but not all verified"}
	}
	if t.accepted < t.clientEstablished {
		return &Limit{Kind: limit.AcceptQueue, At: t.accepted,
			Detail: fmt.Sprintf("%d handshakes completed that no server worker accepted within %s", t.clientEstablished-t.accepted, r.cfg.Timeout)}
	}
	return &Limit{Kind: failureKinds[worst], At: t.clientEstablished,
		Detail: fmt.Sprintf("%d connections failed with %s", t.failed[worst], worst)}
}
