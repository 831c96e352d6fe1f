package runner

import (
	"fmt"

	"github.com/c10mprobe/c10mprobe/internal/units"
	"golang.org/x/sys/unix"
)

// Check is one row of the preflight table.
type Check struct {
	Limit  string `json:"limit"`
	Value  string `json:"value"`
	Needs  string `json:"needs"`
	Action string `json:"action"`
	OK     bool   `json:"ok"`
	Note   string `json:"note,omitempty"`
}

// fdCheck is RLIMIT_NOFILE against the sockets a worker holds.
func fdCheck(h Host, p Plan) Check {
	n := int64(p.Conns)
	perProc := int64(p.ConnsPerWorker)
	c := Check{
		Limit: "fds per process",
		Value: fmt.Sprintf("RLIMIT_NOFILE %d soft / %d hard; each worker %d", h.NoFileSoft, h.NoFileHard, p.NoFile),
		Needs: fmt.Sprintf("%s sockets (one fd each, client and server)", units.Count(2*n)),
	}
	if p.ServerWorkers == 0 {
		c.Limit, c.Needs = "client fds", fmt.Sprintf("%s sockets (one fd each; the server's are its own)", units.Count(n))
	} else if p.ClientWorkers == 0 {
		c.Limit, c.Needs = "server fds", fmt.Sprintf("%s sockets (one fd each; the dialers' are on their hosts)", units.Count(n))
	}
	capacity := int64(max(p.ClientWorkers, p.ServerWorkers)) * perProc
	c.OK = capacity >= n
	switch {
	case !c.OK && p.CapConns > 0 && capacity >= int64(p.CapConns):
		c.OK = true
		c.Action = fmt.Sprintf("shard over %d client + %d server workers of %s sockets each: the memory cap holds at most ≈ %s", p.ClientWorkers, p.ServerWorkers, units.Count(perProc), units.Count(int64(p.CapConns)))
	case c.OK:
		c.Action = fmt.Sprintf("shard over %d client + %d server workers of %s sockets each", p.ClientWorkers, p.ServerWorkers, units.Count(perProc))
	default:
		c.Action = fmt.Sprintf("binds at about %s: %d workers per side × %s sockets (each keeping up to %d fds for itself)", units.Count(capacity), p.ClientWorkers, units.Count(perProc), fdReserve)
	}
	return c
}

// Preflight computes, before anything is opened, every limit the run will
// meet and what will be done about each.
func Preflight(h Host, p Plan, want Tuning, reserve uint64, noTune bool) []Check {
	n := int64(p.Conns)
	out := []Check{fdCheck(h, p)}

	ends := int64(p.EndsHere)
	need := ends*n + h.FilesOpen + 64*int64(p.ClientWorkers+p.ServerWorkers)
	c := Check{Limit: "fs.file-max", Value: units.Count(h.FileMax), Needs: units.Count(need) + " open files", OK: need <= h.FileMax || h.CapSysAdmin}
	switch {
	case need <= h.FileMax:
		c.Action = "ok"
	case h.CapSysAdmin:
		// alloc_empty_file() (fs/file_table.c) skips max_files for CAP_SYS_ADMIN.
		c.Action = "ok: root may open files past fs.file-max"
	default:
		c.Action = fmt.Sprintf("binds near %s connections (ENFILE)", units.Count((h.FileMax-h.FilesOpen)/ends))
	}
	out = append(out, c)

	watches := ends * n
	c = Check{Limit: "epoll watches", Value: fmt.Sprintf("fs.epoll.max_user_watches %s (one user's processes together)", units.Count(h.EpollMaxWatches)),
		Needs: units.Count(watches) + " (one per socket)", OK: watches <= h.EpollMaxWatches}
	c.Action = "ok"
	if !c.OK {
		c.Action = fmt.Sprintf("binds near %s connections (epoll_ctl: ENOSPC); raise fs.epoll.max_user_watches", units.Count(h.EpollMaxWatches/ends))
	}
	out = append(out, c)

	out = append(out, processesCheck(h, p))
	if p.ClientWorkers == 0 {
		// serve: the source ports are the dialers'.
		return append(out, backlogAndMemory(h, p, want, reserve, noTune)...)
	}

	ports := int64(len(p.Sources)) * int64(p.PortsFree)
	c = Check{
		Limit: "source ports",
		Value: fmt.Sprintf("ip_local_port_range %d–%d (%s per address)", want.PortLo, want.PortHi, units.Count(int64(p.PortsPerSource))),
		Needs: units.Count(n) + " (address, port) pairs to one server port",
		OK:    ports >= n,
	}
	if p.PortsHeld > 0 {
		c.Value += fmt.Sprintf(", %s held by other programs' sockets: %s free on every address", units.Count(int64(p.PortsHeld)), units.Count(int64(p.PortsFree)))
		c.Note = "a port another program bound with bind() (TIME_WAIT included, for 60 s) is skipped by connect() on every address"
	}
	how := "given"
	if p.AutoSources {
		how = "automatic, from 127.1.0.1"
	}
	if p.RunnerPorts {
		if p.AutoSources {
			c.Value += fmt.Sprintf(", of which the runner binds %d–%d on each address", p.PortLo, p.PortLo+p.PortsPerSource-1)
		}
		c.Note = "other programs' connect() skips a port the run bound, from every address, until the run ends (--port-choice kernel leaves them the whole range)"
	}
	if c.OK {
		c.Action = fmt.Sprintf("%d source addresses (%s): %s pairs", len(p.Sources), how, units.Count(ports))
	} else {
		c.Action = fmt.Sprintf("binds at %s: %d source addresses × %s ports", units.Count(ports), len(p.Sources), units.Count(int64(p.PortsFree)))
	}
	out = append(out, c)
	return append(out, backlogAndMemory(h, p, want, reserve, noTune)...)
}

// backlogAndMemory are the preflight's last rows: the accept backlog,
// conntrack and memory.
func backlogAndMemory(h Host, p Plan, want Tuning, reserve uint64, noTune bool) []Check {
	n := int64(p.Conns)
	var out []Check
	if p.ServerWorkers > 0 || p.EndsHere == 2 { // dial listens on nothing
		out = append(out, backlogCheck(h, want, noTune))
	}
	if h.InputBacklog > 0 {
		out = append(out, inputBacklogCheck(h, want, noTune))
	}
	if h.ConntrackMax > 0 {
		// nf_conntrack is loaded; it tracks a flow only where a rule asks.
		c := Check{Limit: "conntrack", Value: fmt.Sprintf("net.netfilter.nf_conntrack_max %s, %s in use", units.Count(h.ConntrackMax), units.Count(h.ConntrackCount)),
			Needs: units.Count(n) + " entries if the path is tracked", OK: h.ConntrackMax-h.ConntrackCount >= n}
		c.Action = "ok"
		if !c.OK {
			c.Action = fmt.Sprintf("binds near %s if the path is tracked (SYNs dropped past it)", units.Count(h.ConntrackMax-h.ConntrackCount))
		}
		out = append(out, c)
	}

	per, src := h.KernelBytesPerConn(p.Family)
	per = per * uint64(p.EndsHere) / 2
	avail := int64(h.Mem.MemAvailable) - int64(reserve)
	c := Check{Limit: "memory", Value: fmt.Sprintf("MemAvailable %s, reserve %s", units.Bytes(h.Mem.MemAvailable), units.Bytes(reserve))}
	if per == 0 {
		c.Needs, c.OK, c.Action = "unknown", true, "the reserve still guards the run"
		c.Note = "kernel bytes per connection: " + src
	} else {
		c.Needs = fmt.Sprintf("≈ %s (%s per connection)", units.Bytes(uint64(n)*per), units.Bytes(per))
		c.Note = "kernel bytes per connection: " + src
		c.OK = avail > 0 && uint64(avail) >= uint64(n)*per
		if c.OK {
			c.Action = "ok"
		} else {
			c.Action = fmt.Sprintf("the reserve stops the run near %s connections", units.Count(max(0, avail)/int64(per)))
		}
	}
	out = append(out, c)
	return out
}

// threadsPerWorker is what a worker process runs: its one working thread
// and the Go runtime's (sysmon, and a few parked); 3 or 4 measured.
const threadsPerWorker = 5

// processesCheck holds the planned workers, each a process of a few
// threads and each thread a pid, against kernel.pid_max, kernel.threads-max
// and RLIMIT_NPROC (root is exempt from the last: copy_process() lets
// CAP_SYS_RESOURCE and CAP_SYS_ADMIN past it).
func processesCheck(h Host, p Plan) Check {
	workers := int64(p.ClientWorkers + p.ServerWorkers)
	need := h.Tasks + workers*threadsPerWorker
	room := min(h.PidMax, h.ThreadsMax)
	c := Check{Limit: "processes",
		Value: fmt.Sprintf("kernel.pid_max %s, kernel.threads-max %s, %s threads now", units.Count(h.PidMax), units.Count(h.ThreadsMax), units.Count(h.Tasks)),
		Needs: fmt.Sprintf("%d + %d workers of ≈ %d threads", p.ClientWorkers, p.ServerWorkers, threadsPerWorker),
		OK:    need <= room}
	if !h.Root && h.NprocSoft != unix.RLIM_INFINITY && uint64(need) > h.NprocSoft {
		c.OK = false
	}
	c.Action = "ok"
	if !c.OK {
		c.Action = fmt.Sprintf("too many: %s threads would exceed the %s the kernel allows", units.Count(need), units.Count(room))
	}
	return c
}

// inputBacklogCheck is the row of the CPUs' input queues, which every
// packet between two ends on this host waits in.
func inputBacklogCheck(h Host, want Tuning, noTune bool) Check {
	c := Check{
		Limit: "input backlog",
		Value: fmt.Sprintf("net.core.netdev_max_backlog %s packets a CPU", units.Count(h.InputBacklog)),
		Needs: fmt.Sprintf("≥ %s (a message and its answer a connection)", units.Count(max(h.InputBacklog, want.InputBacklog))),
		OK:    want.InputBacklog <= h.InputBacklog,
	}
	switch {
	case c.OK:
		c.Action = "ok"
	case noTune || !h.Root:
		c.Action = "left as is (--no-tune, or not root): packets past it are dropped and resent after a timeout"
	default:
		c.Action = fmt.Sprintf("raise to %s for the run", units.Count(want.InputBacklog))
	}
	return c
}

// backlogCheck is the accept backlog's row: the queue for connects in flight.
func backlogCheck(h Host, want Tuning, noTune bool) Check {
	c := Check{
		Limit: "accept backlog",
		Value: fmt.Sprintf("somaxconn %d, tcp_max_syn_backlog %d", h.Somaxconn, h.SynBacklog),
		Needs: fmt.Sprintf("≥ %d (connects in flight)", want.Backlog),
		OK:    h.Somaxconn >= want.Backlog && h.SynBacklog >= want.Backlog,
	}
	switch {
	case c.OK:
		c.Action = "ok"
	case noTune:
		c.Action = "left as is (--no-tune): expect SYN drops and 1 s retransmits"
	default:
		c.Action = fmt.Sprintf("raise both to %d for the run", want.Backlog)
	}
	return c
}
