package live

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/runner"
)

// Input adapts the sample and the host's limits into the analysis' input.
func (s *Server) Input(h runner.Host, sock procfs.Sockstat, reserve uint64) analysis.HeadroomInput {
	in := analysis.HeadroomInput{
		Ports: s.Ports, Conns: s.Conns, LocalPeers: s.LocalPeers,
		Buffered: s.Buffered, PeerBuffered: s.PeerBuffered, RcvBufs: s.RcvBufs, RmemDefault: uint64(s.Net.TCPRmem[1]),
		MemAvailable: h.Mem.MemAvailable, Reserve: reserve,
		TCPMemNow: sock.TCPMemPages, TCPMem: s.Net.TCPMem,
		FileMax: h.FileMax, FilesOpen: h.FilesOpen,
		ConntrackMax: s.Net.ConntrackMax, ConntrackCount: s.Net.ConntrackCount,
		EpollMaxWatches: h.EpollMaxWatches, ThreadsMax: h.ThreadsMax, PidMax: h.PidMax, Tasks: h.Tasks,
		PortLo: s.Net.PortLo, PortHi: s.Net.PortHi, Netns: s.Netns, BusiestSourcePorts: s.BusiestSourcePorts,
	}
	if s.BusiestSource.IsValid() {
		in.BusiestSource, in.BusiestDest = s.BusiestSource.String(), s.BusiestDest.String()
	}
	if per, why := slabmodel.KernelBytes(h.SlabObjSize, "TCP"); per > 0 {
		in.KernelPerSocket, in.KernelWhy = per/2, "a socket's slab objects: "+strings.TrimPrefix(why, "2 × ")
	} else {
		in.KernelWhy = "unknown: /proc/slabinfo, which prices a socket's objects, needs root"
	}
	for _, p := range s.Procs {
		in.Procs = append(in.Procs, analysis.HeadroomProc{Pid: p.Pid, Comm: p.Comm, UID: p.UID, Conns: p.Conns, FDs: p.FDs,
			NoFile: p.NoFile, Threads: p.Threads, Pss: p.Pss, EpollWatches: p.EpollWatches})
	}
	for _, l := range s.Listeners {
		in.Listeners = append(in.Listeners, analysis.HeadroomListener{Addr: l.Addr.String(), Queued: l.Queued, Max: l.Max})
	}
	if c := s.Cgroup; c != nil {
		in.Cgroup = &analysis.HeadroomCgroup{Path: c.Path, MemMax: c.MemMax, MemCurrent: c.MemCurrent, SockBytes: c.SockBytes, PidsMax: c.PidsMax, PidsNow: c.PidsNow}
	}
	return in
}

// ErrNoProcess: a pid asked for is not running.
var ErrNoProcess = errors.New("no such process")

// Headroom reads the server on ports or of pids and the host's limits, and
// explains its headroom; reserve 0 takes run's default.
func Headroom(ports []uint16, pids []int, reserve uint64) (analysis.Headroom, *Server, error) {
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("%s/%d", procfs.Root, pid)); pid < 1 || err != nil {
			return analysis.Headroom{}, nil, fmt.Errorf("--pid %d: %w", pid, ErrNoProcess)
		}
	}
	h, err := runner.ReadHost()
	if err != nil {
		return analysis.Headroom{}, nil, err
	}
	s, err := Read(ports, pids)
	if err != nil {
		return analysis.Headroom{}, nil, err
	}
	if reserve == 0 {
		reserve = runner.DefaultReserve(h.Mem.MemTotal)
	}
	sock, err := procfs.ReadSockstat()
	if err != nil {
		return analysis.Headroom{}, nil, err
	}
	return analysis.ExplainHeadroom(s.Input(h, sock, reserve)), s, nil
}
