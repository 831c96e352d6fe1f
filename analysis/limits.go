package analysis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

func ptr(v uint64) *uint64 { return &v }

// limits lists every limit that could bind, with the connection count at
// which it would, from the run's measured costs; first to bind first.
func limits(r Run, e Explanation) []LimitLine {
	l := r.Limits
	out := []LimitLine{fdLine(r)}
	if l.FileMax > 0 {
		out = append(out, fileMaxLine(r))
	}
	if l.EpollMaxWatches > 0 {
		out = append(out, LimitLine{kind: limit.EpollWatches, Name: "epoll watches",
			Value:   fmt.Sprintf("fs.epoll.max_user_watches %s (one user's processes together)", units.Count(uint64(l.EpollMaxWatches))),
			Used:    fmt.Sprintf("%s, one per socket on this host", units.Count(r.ends()*r.Connections)),
			BindsAt: ptr(uint64(l.EpollMaxWatches) / r.ends()),
			Detail:  "every socket is watched by its worker's epoll, and the workers run as one user: epoll_ctl fails with ENOSPC past it (ep_insert); raise fs.epoll.max_user_watches"})
	}
	if r.Mode != "serve" { // serve's source ports are its dialers'
		out = append(out, portsLine(r))
	}
	if l.ConntrackMax > 0 {
		out = append(out, conntrackLine(r))
	}
	// A network namespace other than the host's has no net.ipv4.tcp_mem
	// (it is init_net's alone): the row is left out rather than shown as 0.
	if l.TCPMemPages[2] > 0 {
		out = append(out, tcpMemLine(r))
	}
	out = append(out, memoryLine(r, e))
	if m := r.Memcap; m != nil {
		out = append(out, memcapLine(r, *m))
	}
	out = append(out, broughtLimits(r)...)
	if rl := r.RunLimit; rl != nil {
		// The run met this limit: it binds where the run stopped.
		for i := range out {
			if out[i].kind != "" && out[i].kind == rowKind(rl.Kind) {
				out[i].BindsAt = ptr(rl.At)
				out[i].Detail = "the run stopped here: " + rl.Detail
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].BindsAt, out[j].BindsAt
		switch {
		case a == nil:
			return false
		case b == nil:
			return true
		}
		return *a < *b
	})
	return out
}

// fdLine is RLIMIT_NOFILE, which the runner's worker processes step past.
func fdLine(r Run) LimitLine {
	l, budget := r.Limits, r.FDsPerWorker
	fd := LimitLine{kind: limit.Fds, Name: "fds per process", Value: fmt.Sprintf("RLIMIT_NOFILE %s per worker (hard %s)", units.Count(budget), units.Count(l.NoFileHard)),
		Used: fmt.Sprintf("%s sockets in the fullest worker, one fd each", units.Count(r.MaxHeldPerFDs))}
	if r.Brought != nil {
		fd.Name, fd.Value = "client fds per process", fmt.Sprintf("RLIMIT_NOFILE %s per client worker (hard %s)", units.Count(budget), units.Count(l.NoFileHard))
	}
	if l.MaxWorkers > 0 {
		fd.BindsAt = ptr(uint64(l.MaxWorkers) * r.SocketsPerWorker)
		fd.Detail = fmt.Sprintf("%d workers a side × %s sockets each (--max-workers)", l.MaxWorkers, units.Count(r.SocketsPerWorker))
	} else {
		fd.Detail = "the runner adds worker processes, so the per-process limit never binds the total"
	}
	return fd
}

// fileMaxLine is fs.file-max: every socket is an open file.
func fileMaxLine(r Run) LimitLine {
	l := r.Limits
	fm := LimitLine{kind: limit.FileMax, Name: "fs.file-max", Value: units.Count(uint64(l.FileMax)),
		Used: fmt.Sprintf("%s files open before, +%d per connection", units.Count(uint64(l.FilesOpen)), r.ends())}
	if l.Privileged {
		// alloc_empty_file() (fs/file_table.c) skips the max_files
		// check for CAP_SYS_ADMIN.
		fm.Detail = "the run is root, and CAP_SYS_ADMIN may open files past fs.file-max"
	} else {
		fm.BindsAt = ptr(uint64(max(0, l.FileMax-l.FilesOpen)) / r.ends())
		fm.Detail = "every socket on this host is an open file (ENFILE)"
	}
	return fm
}

// tcpMemLine is net.ipv4.tcp_mem: socket buffers, which slow past it.
func tcpMemLine(r Run) LimitLine {
	l := r.Limits
	tcpMem := uint64(l.TCPMemPages[2]) * max(1, l.PageSize)
	// What tcp_mem counts is /proc/net/sockstat's page count.
	charged := uint64(max(0, r.Peak.TCPMemPages-r.Idle.TCPMemPages)) * max(1, l.PageSize)
	perConnBuf := float64(charged) / float64(max(1, r.Connections))
	tm := LimitLine{Name: "tcp_mem", Value: fmt.Sprintf("%s (net.ipv4.tcp_mem max, %s pages)", units.Bytes(tcpMem), units.Count(uint64(l.TCPMemPages[2]))),
		Used: fmt.Sprintf("%s charged to it (%.0f B per connection, /proc/net/sockstat)", units.Bytes(charged), perConnBuf)}
	if perConnBuf < 1 {
		tm.Detail = "idle connections hold no buffer memory, so tcp_mem cannot bind"
		return tm
	}
	tm.BindsAt = ptr(uint64(float64(tcpMem) / perConnBuf))
	// Past tcp_mem[2], __sk_mem_raise_allocated refuses buffer memory, but
	// tcp_data_queue() still takes an in-order skb into an empty receive
	// queue (sk_forced_mem_schedule), so every connection makes progress: a
	// limit on throughput, not on connections (docs/measurements.md).
	tm.Detail = "past it TCP refuses socket buffer memory except one in-order skb into an empty receive queue: connections still open, but their data crawls"
	if charged > tcpMem {
		tm.Detail += fmt.Sprintf("; this run went past it, to %s charged", units.Bytes(charged))
	}
	return tm
}

// memoryLine is memory: the growth a connection costs, against what was
// available above the reserve.
func memoryLine(r Run, e Explanation) LimitLine {
	l := r.Limits
	perConn := float64(e.GrowthBytes) / float64(max(1, r.Connections))
	avail := int64(r.Idle.MemAvailable) - int64(l.Reserve)
	mem := LimitLine{kind: limit.Memory, Name: "memory", Value: fmt.Sprintf("MemAvailable %s before the run, reserve %s", units.Bytes(r.Idle.MemAvailable), units.Bytes(l.Reserve)),
		Used: fmt.Sprintf("%s (%.0f B per connection)", units.Bytes(uint64(max(0, e.GrowthBytes))), perConn)}
	if perConn >= 1 && avail > 0 {
		mem.BindsAt = ptr(uint64(float64(avail) / perConn))
		mem.Detail = fmt.Sprintf("%.1f KiB of kernel memory per connection, which cannot be swapped, and %.0f B of user space", e.KernelPerConnection/1024, e.UserPerConnection)
	} else {
		mem.Detail = "no memory growth measured"
	}
	return mem
}

// rowKind is the row of the limits table that a run's limit kind bound on.
func rowKind(k limit.Kind) limit.Kind {
	switch k {
	case limit.MemoryReserve, limit.MemoryPressure, limit.SwapFull, limit.MinWatermark, limit.ReclaimExhausted:
		return limit.Memory
	}
	return k
}

// memcapLine is the --mem-limit cgroup's row: what it was charged per
// connection between idle and peak, and how many connections that puts
// under the share of the cap where the run stops opening.
func memcapLine(r Run, m Memcap) LimitLine {
	charged := float64(m.PeakBytes) - float64(m.BaselineBytes)
	l := LimitLine{kind: limit.Memcap, Name: "memory cap",
		Value: fmt.Sprintf("memory cgroup capped at %s (--mem-limit); the workers hold %s of it idle", units.Bytes(m.LimitBytes), units.Bytes(m.BaselineBytes)),
		Used:  fmt.Sprintf("%s charged at the peak (%.0f B per connection)", units.Bytes(m.PeakBytes), charged/float64(max(1, r.Connections)))}
	room := m.StopShare*float64(m.LimitBytes) - float64(m.BaselineBytes)
	if charged > 0 && r.Connections > 0 && room > 0 {
		l.BindsAt = ptr(uint64(room / (charged / float64(r.Connections))))
	}
	l.Detail = fmt.Sprintf("the cgroup is charged each client's sock and both ends' inodes, files, dentries and epoll items; the server's TCP sock is allocated in softirq and charged to no cgroup; predicted ≈ %s before the run", units.Count(m.Predicted))
	return l
}

// minCostConnections is the smallest run whose per-connection costs the
// verdict stands behind: below it the run's fixed costs (runtimes, first
// slab pages) swamp the per-connection ones, and from it the socket slabs
// are within 1 % of a large run's (docs/measurements.md, "Figures behind the code").
const minCostConnections = 10000

func verdict(r Run, e Explanation) (string, string) {
	if len(e.Limits) == 0 || e.Limits[0].BindsAt == nil {
		return "", "no limit could be scaled from this run"
	}
	first := e.Limits[0]
	at := *first.BindsAt
	if rl := r.RunLimit; rl != nil && rl.Kind == limit.MemoryReserve && first.kind == limit.Memory {
		// The guard, not memory's end: say what stopped the run.
		return first.Name, fmt.Sprintf("the memory reserve stopped the run at %s connections: spare memory fell below the %s kept free (--reserve), with %s available before the run; each connection costs %.1f KiB of unswappable kernel memory and %.0f B of user space",
			units.Count(at), units.Bytes(r.Limits.Reserve), units.Bytes(r.Idle.MemAvailable), e.KernelPerConnection/1024, e.UserPerConnection)
	}
	switch first.Name {
	case "memory":
		var top []string
		for _, l := range e.Ledger {
			if l.Kind == "slab" && len(top) < 4 && l.BytesPerConnection >= 100 {
				top = append(top, fmt.Sprintf("%s %.2f KiB", l.Name, l.BytesPerConnection/1024))
			}
		}
		parts := "two sockets"
		if r.ends() == 1 {
			parts = "its socket on this host"
		}
		if len(top) > 0 {
			parts += "; " + strings.Join(top, ", ") + ", …"
		}
		v := fmt.Sprintf("memory binds first: each connection costs %.1f KiB of unswappable kernel memory (%s) and %.0f B of user space; %s available less the %s reserve holds ≈ %s connections",
			e.KernelPerConnection/1024, parts, e.UserPerConnection, units.Bytes(r.Idle.MemAvailable), units.Bytes(r.Limits.Reserve), units.Approx(at))
		if r.Connections < minCostConnections {
			// Fixed costs (worker runtimes, partly filled slab pages,
			// per-CPU caches) are divided by too few connections.
			v += fmt.Sprintf(" — but from only %s connections, fixed costs swamp the per-connection ones: measure with --conns %s or more", units.Count(r.Connections), units.Count(minCostConnections))
		}
		return first.Name, v
	case "memory cap":
		m := r.Memcap
		perConn := (float64(m.PeakBytes) - float64(m.BaselineBytes)) / float64(max(1, r.Connections))
		return first.Name, fmt.Sprintf("the memory cap binds first at %s connections: the cgroup is charged %.1f KiB per connection (the server's TCP sock, allocated in softirq, is charged to no cgroup); %s capped, less the %s the idle workers hold, stops the run at %.0f %% of the cap (predicted before the run: %s); the machine itself spends %.1f KiB per connection",
			units.Count(at), perConn/1024, units.Bytes(m.LimitBytes), units.Bytes(m.BaselineBytes), 100*m.StopShare, units.Count(m.Predicted), (e.KernelPerConnection+e.UserPerConnection)/1024)
	case "source ports":
		l := r.Limits
		ports := uint64(l.PortHi - l.PortLo + 1)
		held := ""
		if l.PortsHeld > 0 {
			held = fmt.Sprintf(", less the %s ports other programs' sockets held (connect() skips a port bound by bind(), TIME_WAIT included, on every address: %s were free on each)",
				units.Count(uint64(l.PortsHeld)), units.Count(ports-min(ports, uint64(l.PortsHeld))))
		}
		return first.Name, fmt.Sprintf("source ports bind first at %s connections: %s × %s ports of ip_local_port_range %d–%d to one server port%s; add source addresses (--src) or widen the range",
			units.Count(at), plural(r.SourceAddresses, "source address", "source addresses"), units.Count(ports), l.PortLo, l.PortHi, held)
	case "server fds", "server threads", "server backlog":
		if detail, ok := strings.CutPrefix(first.Detail, "the run stopped here: "); ok {
			return first.Name, "the server you brought binds first: " + detail
		}
		return first.Name, fmt.Sprintf("the server you brought binds first, by its %s, at %s connections: %s", strings.TrimPrefix(first.Name, "server "), units.Count(at), first.Detail)
	case "fds per process", "client fds per process":
		return first.Name, fmt.Sprintf("file descriptors bind first at %s connections: %s", units.Count(at), first.Detail)
	case "epoll watches":
		return first.Name, fmt.Sprintf("epoll watches bind first at %s connections: %s", units.Count(at), first.Detail)
	}
	return first.Name, fmt.Sprintf("%s binds first at %s connections: %s", first.Name, units.Count(at), first.Detail)
}

func myths(r Run, e Explanation) []Myth {
	n := r.Connections
	var out []Myth
	// Each myth is told only where this run's numbers refute it.
	if r.SocketsOnPort > 1<<16 {
		out = append(out, Myth{
			Claim: "a server port can take only 65,536 connections",
			Measured: fmt.Sprintf("%s connections on the one port %s, facing %s distinct client (address, port) endpoints over %d source addresses (sock_diag)",
				units.Count(r.SocketsOnPort), r.Server, units.Count(r.DistinctEndpoints), r.SourceAddresses),
		})
	}
	// Two fds a socket would have stopped the fullest worker at half its limit.
	if r.FDsPerWorker > 0 && 2*r.MaxHeldPerFDs > r.FDsPerWorker {
		out = append(out, fdsMyth(r))
	}
	// A myth worth telling when others held a noticeable share (1 %) of it.
	if l := r.Limits; l.PortsHeld > 0 && l.PortsHeld*100 >= l.PortHi-l.PortLo+1 {
		ports := l.PortHi - l.PortLo + 1
		out = append(out, Myth{
			Claim: fmt.Sprintf("one source address gives %s ports", units.Count(uint64(ports))),
			Measured: fmt.Sprintf("not while other programs bind: their sockets held %s ports of ip_local_port_range %d–%d when the run began, and connect() skips a port bound by bind() on every address, leaving %s on each",
				units.Count(uint64(l.PortsHeld)), l.PortLo, l.PortHi, units.Count(uint64(ports-min(ports, l.PortsHeld)))),
		})
	}
	// Refuted where the buffers held were well under the defaults' sum.
	if naive := r.ends() * n * (r.Limits.RmemDefault + r.Limits.WmemDefault); r.Limits.RmemDefault > 0 && n > 0 && 2*r.SocketBuffers < naive {
		out = append(out, Myth{
			Claim: "each socket allocates its default tcp_rmem + tcp_wmem",
			Measured: fmt.Sprintf("those are caps: %s sockets × (%s + %s) would be %s; the sockets held %s of buffers (sock_diag)",
				units.Count(r.ends()*n), units.Bytes(r.Limits.RmemDefault), units.Bytes(r.Limits.WmemDefault), units.Bytes(naive), units.Bytes(r.SocketBuffers)),
		})
	}
	slab := int64(r.Peak.Slab) - int64(r.Idle.Slab)
	rec := int64(r.Peak.SReclaimable) - int64(r.Idle.SReclaimable)
	if slab > 0 && rec > 0 {
		out = append(out, Myth{
			Claim: "free's and sar's \"used\" show what the connections cost",
			Measured: fmt.Sprintf("slab grew by %s; free's used leaves out the %s of it that is SReclaimable (dentries, inodes: pinned while the sockets are open), and sysstat's kbmemused leaves out all slab",
				units.Bytes(uint64(slab)), units.Bytes(uint64(rec))),
		})
	}
	return out
}

// fdsMyth is the two-fds myth as this run refutes it.
func fdsMyth(r Run) Myth {
	m := Myth{Claim: "a connection costs two file descriptors per process"}
	switch b := r.Brought; {
	case r.ends() == 1:
		m.Measured = fmt.Sprintf("one fd per socket: the fullest worker held %s sockets with RLIMIT_NOFILE %s; the other end of each connection is on another host",
			units.Count(r.MaxHeldPerFDs), units.Count(r.FDsPerWorker))
	case b != nil:
		m.Measured = fmt.Sprintf("one fd per socket at each end: the fullest client worker held %s sockets with RLIMIT_NOFILE %s, and your server's fds grew by %.2f a connection",
			units.Count(r.MaxHeldPerFDs), units.Count(r.FDsPerWorker), b.perHeld(b.FDsIdle, b.FDsPeak))
	default:
		m.Measured = fmt.Sprintf("one fd per socket: the fullest worker held %s sockets with RLIMIT_NOFILE %s; a loopback connection is two sockets, one in a client worker and one in a server worker",
			units.Count(r.MaxHeldPerFDs), units.Count(r.FDsPerWorker))
	}
	return m
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ends is the sockets of a connection on this host: 2, or 1 for serve and
// dial (a run recorded before they existed has both).
func (r Run) ends() uint64 {
	if r.EndsHere == 1 {
		return 1
	}
	return 2
}

// portsLine is the source ports' row: (address, port) pairs to one port.
func portsLine(r Run) LimitLine {
	l, n := r.Limits, r.Connections
	ports := uint64(l.PortHi - l.PortLo + 1)
	free := ports - min(ports, uint64(l.PortsHeld))
	pairs := free * uint64(r.SourceAddresses)
	sp := LimitLine{kind: limit.Ports, Name: "source ports", Value: fmt.Sprintf("ip_local_port_range %d–%d × %d source addresses × 1 destination", l.PortLo, l.PortHi, r.SourceAddresses),
		Used: fmt.Sprintf("%s of %s (address, port) pairs", units.Count(n), units.Count(pairs))}
	if l.PortsHeld > 0 {
		sp.Value += fmt.Sprintf(", less %s ports other programs held", units.Count(uint64(l.PortsHeld)))
	}
	if r.AutoSources {
		sp.Detail = "the runner takes as many source addresses from 127.0.0.0/8 as it needs, so ports never bind the total"
	} else {
		sp.BindsAt = ptr(pairs)
		sp.Detail = "a connection to one server port needs a distinct (source address, port); more addresses lift it (EADDRNOTAVAIL)"
	}
	return sp
}

// conntrackLine is nf_conntrack_max's row: one entry a tracked connection,
// scaled from what the table grew by between the start and the peak.
func conntrackLine(r Run) LimitLine {
	l := r.Limits
	c := LimitLine{kind: limit.Conntrack, Name: "conntrack", Value: fmt.Sprintf("net.netfilter.nf_conntrack_max %s", units.Count(uint64(l.ConntrackMax))),
		Used: fmt.Sprintf("%s entries at the peak, %s before", units.Count(uint64(max(0, r.ConntrackPeak))), units.Count(uint64(max(0, l.ConntrackCount))))}
	grown := r.ConntrackPeak - l.ConntrackCount
	if perConn := float64(grown) / float64(max(1, r.Connections)); perConn >= 0.5 {
		c.BindsAt = ptr(uint64(float64(max(0, l.ConntrackMax-l.ConntrackCount)) / perConn))
		c.Detail = fmt.Sprintf("%.2f entries a connection: the path is tracked (a rule uses conntrack); past the table's end new connections' SYNs are dropped (dmesg: nf_conntrack: table full); raise nf_conntrack_max or exempt the port (notrack)", perConn)
	} else {
		c.Detail = "the run's connections were not tracked (no rule on their path uses conntrack)"
	}
	return c
}
