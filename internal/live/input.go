package live

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/prometheus/client_golang/prometheus"
)

// Input adapts the sample and the host's limits into the analysis' input.
func (s *Server) Input(h runner.Host, sock procfs.Sockstat, reserve uint64) analysis.HeadroomInput {
	// The machine's memory read as run's machine guard reads it.
	room, _ := host.RoomNow(h.Mem)
	in := analysis.HeadroomInput{
		Ports: s.Ports, Conns: s.Conns, LocalPeers: s.LocalPeers,
		Buffered: s.Buffered, PeerBuffered: s.PeerBuffered, RcvBufs: s.RcvBufs, RmemDefault: uint64(s.Net.TCPRmem[1]),
		MemTotal: h.Mem.MemTotal, MemAvailable: h.Mem.MemAvailable, Room: room, Reserve: reserve,
		TCPMemNow: sock.TCPMemPages, TCPMem: s.Net.TCPMem,
		FileMax: h.FileMax, FilesOpen: h.FilesOpen,
		ConntrackMax: s.Net.ConntrackMax, ConntrackCount: s.Net.ConntrackCount,
		EpollMaxWatches: h.EpollMaxWatches, ThreadsMax: h.ThreadsMax, PidMax: h.PidMax, Tasks: h.Tasks,
		PortLo: s.Net.PortLo, PortHi: s.Net.PortHi, Netns: s.Netns, BusiestSourcePorts: s.BusiestSourcePorts,
	}
	in.GrownSockets = s.grown(uint64(s.Net.TCPRmem[1]), 5)
	if s.BusiestSource.IsValid() {
		in.BusiestSource, in.BusiestDest = s.BusiestSource.String(), s.BusiestDest.String()
	}
	sizes, shares, from := h.SlabObjSize, h.SlabPageShare, "/proc/slabinfo"
	if sizes == nil {
		// /proc/slabinfo and /sys/kernel/slab are root's; BTF is anyone's.
		sizes, from = btfSlabSizes(), "BTF struct sizes laid out as SLUB does (/proc/slabinfo is root's; LSM blobs left out)"
		in.Unread = append(in.Unread, "/proc/slabinfo (root's): a socket's objects priced from BTF")
	}
	if per, why := slabmodel.KernelBytes(sizes, shares, "TCP"); per > 0 {
		why = strings.TrimSuffix(strings.TrimPrefix(why, "2 × "), " from /proc/slabinfo")
		in.KernelPerSocket, in.KernelWhy = per/2, "a socket's slab objects: "+why+" from "+from
	} else {
		in.KernelWhy = "unknown: neither /proc/slabinfo (root's) nor BTF could be read"
	}
	in.Unread = append(in.Unread, s.Unread...)
	for _, p := range s.Procs {
		in.Procs = append(in.Procs, analysis.HeadroomProc{Pid: p.Pid, Comm: p.Comm, UID: p.UID, Conns: p.Conns, FDs: p.FDs,
			NoFile: p.NoFile, Threads: p.Threads, Pss: p.Pss, EpollWatches: p.EpollWatches, NProc: p.NProc, UserTasks: p.UserTasks})
	}
	for _, l := range s.Listeners {
		in.Listeners = append(in.Listeners, analysis.HeadroomListener{Addr: l.Addr.String(), Queued: l.Queued, Max: l.Max})
	}
	if c := s.Cgroup; c != nil {
		in.Cgroup = &analysis.HeadroomCgroup{Path: c.Path, MemMax: c.MemMax, MemCurrent: c.MemCurrent, SockBytes: c.SockBytes, PidsMax: c.PidsMax, PidsNow: c.PidsNow}
	}
	return in
}

// grown names the n server sockets whose receive buffers autotuning grew
// most past rmemDefault (tcp_rmem[1]), largest first.
func (s *Server) grown(rmemDefault uint64, n int) []analysis.HeadroomSocket {
	var out []analysis.HeadroomSocket
	for i, r := range s.RcvBufs {
		if rmemDefault > 0 && r > rmemDefault {
			out = append(out, analysis.HeadroomSocket{Peer: s.Peers[i].String(), RcvBuf: r, Buffered: s.Buffered[i]})
		}
	}
	slices.SortFunc(out, func(a, b analysis.HeadroomSocket) int { return cmp.Compare(b.RcvBuf, a.RcvBuf) })
	return out[:min(n, len(out))]
}

// ErrNoProcess: a pid asked for is not running.
var ErrNoProcess = errors.New("no such process")

// Query is what `headroom` asks for: the server by its ports or pids, the
// memory to keep spare (0: run's default), and a directory for the
// Prometheus textfile ("" for none).
type Query struct {
	Ports    []uint16
	Pids     []int
	Reserve  uint64
	Textfile string
}

// Sample reads the server and the host's limits, explains its headroom, and
// writes the textfile.
func (q Query) Sample() (analysis.Headroom, *Server, error) {
	for _, pid := range q.Pids {
		if _, err := os.Stat(fmt.Sprintf("%s/%d", procfs.Root, pid)); pid < 1 || err != nil {
			return analysis.Headroom{}, nil, fmt.Errorf("--pid %d: %w", pid, ErrNoProcess)
		}
	}
	s, err := Read(q.Ports, q.Pids)
	if err != nil {
		return analysis.Headroom{}, nil, err
	}
	h := s.Host
	reserve := q.Reserve
	if reserve == 0 {
		reserve = runner.DefaultReserve(h.Mem.MemTotal)
	}
	sock, err := procfs.ReadSockstat()
	if err != nil {
		return analysis.Headroom{}, nil, err
	}
	hr := analysis.ExplainHeadroom(s.Input(h, sock, reserve))
	if q.Textfile != "" {
		err = WriteTextfile(q.Textfile, hr)
	}
	return hr, s, err
}

// Watch calls show with first, then samples every d until ctx ends, calling
// show with each sample, the one before and the time between. A server gone
// ends it with what happened.
func (q Query) Watch(ctx context.Context, d time.Duration, first analysis.Headroom, show func(prev *analysis.Headroom, cur analysis.Headroom, dt time.Duration)) error {
	show(nil, first, 0)
	prev, last := first, time.Now()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			cur, _, err := q.Sample()
			if err != nil {
				return fmt.Errorf("the server is gone after %d connections: %w", prev.Now, err)
			}
			show(&prev, cur, now.Sub(last))
			prev, last = cur, now
		}
	}
}

// TextfileName is the file --textfile writes in its directory.
const TextfileName = "c10mprobe_headroom.prom"

// WriteTextfile writes the headroom in Prometheus text format to dir for
// node_exporter's textfile collector, atomically (a temporary file renamed
// over the last), so the collector never reads half a file.
func WriteTextfile(dir string, h analysis.Headroom) error {
	return prometheus.WriteToTextfile(filepath.Join(dir, TextfileName), h.Registry())
}
