package record

import (
	"errors"
	"fmt"
	"os"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/serverlog"
	"github.com/c10mprobe/c10mprobe/runner"
)

// ErrNoPeak says a run ended before its exchange: there is nothing to explain.
var ErrNoPeak = errors.New("the run recorded no idle and peak samples (it ended before its exchange)")

// ErrAborted says a second signal killed the workers: the samples after it
// hold no peak to divide by, and a verdict from them would be confident
// nonsense.
var ErrAborted = errors.New("the run was aborted by a second signal, which killed its workers before their peak was measured: no explanation")

// Input adapts a run's summary and samples into analysis' own types.
func Input(sum Summary, samples []PhaseSample) (analysis.Run, error) {
	res, h := sum.Result, sum.Host
	if res.Aborted {
		return analysis.Run{}, ErrAborted
	}
	idle, peak := sample(samples, runner.PhaseIdle), sample(samples, runner.PhaseExchange)
	if idle == nil || peak == nil {
		return analysis.Run{}, ErrNoPeak
	}
	in := analysis.Run{
		Requested: res.Requested, Connections: res.Established, Verified: res.Verified,
		Server:        fmt.Sprintf("%s:%d", res.Server.Addr, res.Server.Port),
		SocketsOnPort: res.ServerSockets, DistinctEndpoints: res.DistinctClientEndpoints, SourceAddresses: res.SourceAddresses,
		AutoSources:   res.Plan.AutoSources,
		ClientWorkers: res.Workers.Client, ServerWorkers: res.Workers.Server,
		FDsPerWorker: res.Plan.NoFile, SocketsPerWorker: uint64(res.Plan.ConnsPerWorker), SocketsPerFD: 1, MaxHeldPerFDs: res.MaxSocketsPerWorker,
		Idle: memory(idle), Peak: memory(peak),
		SocketBuffers: sum.SocketBuffers, RunnerPss: res.RunnerPss,
		ClientBuffers: sum.SocketBuffersBySide.Client, ServerBuffers: sum.SocketBuffersBySide.Server,
		ClientPss: res.RunnerPssByRole.Client, ServerPss: res.RunnerPssByRole.Server,
		Limits: analysis.Limits{
			NoFileHard: h.NoFileHard, MaxWorkers: res.Plan.MaxWorkers, FileMax: h.FileMax, Privileged: h.CapSysAdmin, FilesOpen: h.FilesOpen,
			PortLo: h.PortLo, PortHi: h.PortHi, PortsHeld: res.Plan.PortsHeld, Somaxconn: h.Somaxconn,
			EpollMaxWatches: h.EpollMaxWatches, ThreadsMax: h.ThreadsMax, PidMax: h.PidMax, Tasks: h.Tasks, ConntrackMax: h.ConntrackMax, ConntrackCount: h.ConntrackCount, TCPMemPages: h.TCPMemPages,
			PageSize: uint64(os.Getpagesize()), Reserve: res.ReserveBytes,
			RmemDefault: uint64(h.TCPRmem[1]), WmemDefault: uint64(h.TCPWmem[1]),
		},
	}
	// A --port-range run records the range it set.
	for _, c := range res.SysctlChanges {
		if c.Key == "net.ipv4.ip_local_port_range" {
			fmt.Sscanf(c.New, "%d %d", &in.Limits.PortLo, &in.Limits.PortHi)
		}
	}
	in.Deaths = deaths(res.Deaths)
	in.ServerExited, in.ServerLog, in.ServerLogElsewhere = serverEnd(res.Server)
	in.EhashEntries = uint64(max(0, h.EhashEntries))
	in.Netns = res.Settings.Netns
	in.PageReporting, in.PageReportedKiB = h.PageReporting == procfs.PageReportingOn, h.PageReportedKiB
	in.Mode, in.EndsHere, in.ConntrackPeak, in.Unaccepted = res.Mode, res.Plan.EndsHere, res.ConntrackPeak, res.Unaccepted
	in.GoneInHold = goneInHold(res.Dialers)
	if own := res.WorkerOwnFDs; own > 0 && own < res.Plan.NoFile {
		in.SocketsPerWorker = res.Plan.NoFile - own // measured, not the plan's reserve
	}
	if s := res.Server; s.External && s.Idle != nil && s.Peak != nil {
		in.Brought = &analysis.BroughtServer{Cmd: s.Cmd, Held: s.Held, Established: res.Established,
			NoFile: s.RlimitNoFile, NProc: s.RlimitNProc, FDsIdle: s.Idle.FDs, FDsPeak: s.Peak.FDs,
			ThreadsIdle: s.Idle.Threads, ThreadsPeak: s.Peak.Threads, AnonIdle: s.Idle.PssAnon, AnonPeak: s.Peak.PssAnon,
			Backlog: s.Backlog, AcceptQueuePeak: s.AcceptQueuePeak}
		in.ServerPss = s.Peak.Pss
	}
	in.Machine = machineRun(res)
	if m := res.Memcap; m != nil {
		in.Memcap = &analysis.Memcap{LimitBytes: m.LimitBytes, StopShare: m.StopShare, BaselineBytes: m.BaselineBytes,
			PeakBytes: m.PeakUsageBytes, Predicted: m.PredictedConnections}
	}
	if res.Limit != nil {
		in.RunLimit = &analysis.Bound{Kind: res.Limit.Kind, At: res.Limit.At, Detail: res.Limit.Detail}
	}
	in.Established, in.Failed = res.Established, res.Failed
	if k := sum.Kernel; k != nil {
		if k.Kmem != nil {
			in.CensusConnections, in.KmemFlags = k.Kmem.CensusConnections, k.Kmem.flagText()
		}
		for name, c := range k.Caches {
			in.Caches = append(in.Caches, analysis.Cache{Name: name, ObjectSize: c.ObjectSize, Live: c.Live,
				RunAllocs: c.RunAllocs, RunSoftirqAllocs: c.RunSoftirqAllocs, OtherAllocs: c.OtherAllocs, Merged: c.Merged, Covers: c.Covers})
		}
	}
	return in, nil
}

// machineRun is what the analysis reads of a --machine-mem run's machine,
// swap and ballast; nil for a run on the host as it is.
func machineRun(res *runner.Result) *analysis.MachineRun {
	m := res.Machine
	if m == nil {
		return nil
	}
	out := &analysis.MachineRun{MemBytes: m.MemBytes, PredictedSwapStart: m.PredictedSwapStartConnection, PredictedStop: m.PredictedConnections,
		OpeningHolds: m.OpeningHolds, OpeningHeldSeconds: m.OpeningHeldSeconds}
	if p := m.Prediction; p != nil {
		out.MinWatermark = p.Seen.Min
	}
	if s := res.Swap; s != nil {
		out.SwapBytes = s.Bytes
	}
	if b := res.Ballast; b != nil {
		out.BallastBytes, out.BallastSwappedPeak, out.MajorFaults = b.Bytes, b.SwappedBytesPeak, b.MajorFaults
		out.TouchP50us, out.TouchP99us, out.TouchMaxus = b.TouchLatencyUs.P50, b.TouchLatencyUs.P99, b.TouchLatencyUs.Max
	}
	return out
}

func memory(s *PhaseSample) analysis.Memory {
	m := s.Meminfo
	out := analysis.Memory{
		MemTotal: m.MemTotal, MemFree: m.MemFree, PCPFree: m.PCPFree, MemAvailable: m.MemAvailable, Buffers: m.Buffers, Cached: m.Cached,
		SwapCached: m.SwapCached, Writeback: m.Writeback, AnonPages: m.AnonPages, Slab: m.Slab, SReclaimable: m.SReclaimable, SUnreclaim: m.SUnreclaim,
		PageTables: m.PageTables, KernelStack: m.KernelStack, Percpu: m.Percpu, SwapTotal: m.SwapTotal, SwapFree: m.SwapFree,
		TCPMemPages: s.Sockstat.TCPMemPages,
	}
	if s.Slabinfo != nil {
		out.Slabinfo = make(map[string]analysis.Slab, len(s.Slabinfo))
		for name, c := range s.Slabinfo {
			out.Slabinfo[name] = analysis.Slab{Active: c.ActiveObjs, Num: c.NumObjs, ObjSize: c.ObjSize}
		}
	}
	return out
}

// deaths are the workers' deaths in analysis' terms.
func deaths(ds []runner.Death) []analysis.Death {
	var out []analysis.Death
	for _, d := range ds {
		ad := analysis.Death{Worker: d.Worker(), How: d.How, OOMKill: d.OOMKill, When: d.When(), HeldBefore: d.HeldBefore}
		if d.HeldAfter != nil {
			ad.HeldAfter, ad.Counted = *d.HeldAfter, true
		}
		out = append(out, ad)
	}
	return out
}

// serverExited says how a --server-cmd ended while the run needed it.
func serverExited(x *runner.ServerExit) string {
	if x == nil {
		return ""
	}
	return fmt.Sprintf("%s during %s", x.Status, x.Phase)
}

// goneInHold are serve's dialers that closed connections in its hold.
func goneInHold(dialers []runner.Dialer) []analysis.DialerGone {
	var gone []analysis.DialerGone
	for _, d := range dialers {
		if d.ClosedInHold > 0 {
			gone = append(gone, analysis.DialerGone{Addr: d.Addr, Closed: d.ClosedInHold, Of: d.Connections})
		}
	}
	return gone
}

// serverEnd is how a brought server ended, what its log said, and whether
// its log is its own (a server the run did not start).
func serverEnd(s runner.ServerResult) (exited string, log *serverlog.Digest, elsewhere bool) {
	return serverExited(s.Exited), s.Log, s.External && s.Cmd == ""
}
