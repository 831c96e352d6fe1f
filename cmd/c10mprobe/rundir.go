package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/runner"
)

// loadRunDir reads what a run recorded.
func loadRunDir(dir string) (summary, []phaseSample, error) {
	var sum summary
	var samples []phaseSample
	for name, v := range map[string]any{"summary.json": &sum, "samples.json": &samples} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			if _, jerr := os.Stat(filepath.Join(dir, runner.JournalFile)); jerr == nil {
				return sum, nil, fmt.Errorf("the run in %s did not finish (it has no %s); if it was killed, `sudo c10mprobe restore %s` undoes what it changed", dir, name, dir)
			}
			return sum, nil, fmt.Errorf("%s is not a run directory (it has no %s)", dir, name)
		}
		if err != nil {
			return sum, nil, fmt.Errorf("reading the run directory: %w", err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			return sum, nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, name), err)
		}
	}
	if sum.Result == nil {
		return sum, nil, fmt.Errorf("%s/summary.json holds no run", dir)
	}
	return sum, samples, nil
}

// analysisInput adapts a run's summary and samples into analysis' own types.
func analysisInput(sum summary, samples []phaseSample) (analysis.Run, error) {
	res, h := sum.Result, sum.Host
	find := func(ph runner.Phase) *phaseSample {
		for i := range samples {
			if samples[i].Phase == ph {
				return &samples[i]
			}
		}
		return nil
	}
	idle, peak := find(runner.PhaseIdle), find(runner.PhaseExchange)
	if idle == nil || peak == nil {
		return analysis.Run{}, fmt.Errorf("the run recorded no idle and peak samples (it ended before its exchange)")
	}
	in := analysis.Run{
		Requested: res.Requested, Connections: res.Established, Verified: res.Verified,
		Server:        fmt.Sprintf("%s:%d", res.Server.Addr, res.Server.Port),
		SocketsOnPort: res.ServerSockets, DistinctEndpoints: res.DistinctClientEndpoints, SourceAddresses: res.SourceAddresses,
		AutoSources:   res.Plan.AutoSources,
		ClientWorkers: res.Workers.Client, ServerWorkers: res.Workers.Server,
		FDsPerWorker: res.Plan.NoFile, SocketsPerFD: 1, MaxHeldPerFDs: res.MaxSocketsPerWorker,
		Idle: memory(idle), Peak: memory(peak),
		SocketBuffers: sum.SocketBuffers, RunnerPss: res.RunnerPss,
		ClientBuffers: sum.SocketBuffersBySide.Client, ServerBuffers: sum.SocketBuffersBySide.Server,
		ClientPss: res.RunnerPssByRole.Client, ServerPss: res.RunnerPssByRole.Server,
		Limits: analysis.Limits{
			NoFileHard: h.NoFileHard, MaxWorkers: res.Plan.MaxWorkers, FileMax: h.FileMax, Privileged: h.CapSysAdmin, FilesOpen: h.FilesOpen,
			PortLo: h.PortLo, PortHi: h.PortHi, Somaxconn: h.Somaxconn,
			ConntrackMax: h.ConntrackMax, ConntrackCount: h.ConntrackCount, TCPMemPages: h.TCPMemPages,
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
	if res.Limit != nil {
		in.RunLimit = &analysis.Bound{Kind: res.Limit.Kind, At: res.Limit.At, Detail: res.Limit.Detail}
	}
	if k := sum.Kernel; k != nil {
		for name, c := range k.Caches {
			in.Caches = append(in.Caches, analysis.Cache{Name: name, ObjectSize: c.ObjectSize, Live: c.Live,
				RunAllocs: c.RunAllocs, OtherAllocs: c.OtherAllocs, Merged: c.Merged})
		}
	}
	return in, nil
}

func memory(s *phaseSample) analysis.Memory {
	m := s.Meminfo
	out := analysis.Memory{
		MemTotal: m.MemTotal, MemFree: m.MemFree, PCPFree: m.PCPFree, MemAvailable: m.MemAvailable, Buffers: m.Buffers, Cached: m.Cached,
		SwapCached: m.SwapCached, AnonPages: m.AnonPages, Slab: m.Slab, SReclaimable: m.SReclaimable, SUnreclaim: m.SUnreclaim,
		PageTables: m.PageTables, KernelStack: m.KernelStack, Percpu: m.Percpu, SwapTotal: m.SwapTotal, SwapFree: m.SwapFree,
		TCPMemPages: s.Sockstat.TCPMemPages,
	}
	if s.Slabinfo != nil {
		out.Slabinfo = make(map[string]analysis.Slab, len(s.Slabinfo))
		for name, c := range s.Slabinfo {
			out.Slabinfo[name] = slabOf(c)
		}
	}
	return out
}

func slabOf(c procfs.SlabCache) analysis.Slab {
	return analysis.Slab{Active: c.ActiveObjs, Num: c.NumObjs, ObjSize: c.ObjSize}
}
