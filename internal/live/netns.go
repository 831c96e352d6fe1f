package live

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/nshop"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/runner"
)

// NetLimits are the limits a network namespace keeps for itself.
type NetLimits struct {
	PortLo         int      `json:"port_lo"`
	PortHi         int      `json:"port_hi"`
	Somaxconn      int64    `json:"somaxconn"`
	ConntrackMax   int64    `json:"conntrack_max"`   // 0: nf_conntrack not loaded
	ConntrackCount int64    `json:"conntrack_count"` // this namespace's entries
	TCPMem         [3]int64 `json:"tcp_mem_pages"`   // per namespace from 4.15
	TCPRmem        [3]int64 `json:"tcp_rmem"`
	TWReuse        int64    `json:"tcp_tw_reuse"`
}

// reusesTimeWait says connect() may take the port of a TIME_WAIT socket to
// dst: net.ipv4.tcp_tw_reuse 1, or 2 (loopback only, the default since
// 4.18, commit 79e9fed46038); tcp_twsk_unique also wants it a second old.
func (n NetLimits) reusesTimeWait(dst netip.Addr) bool {
	return n.TWReuse == 1 || n.TWReuse == 2 && dst.IsLoopback()
}

// inNetnsOf runs f in pid's network namespace, on a thread that joined it
// (nshop: sock_diag and /proc/sys/net answer for the calling thread's
// namespace), and returns that namespace's name where it is not this
// process's. pid 0, or a pid in our namespace, runs f here.
func inNetnsOf(pid int, f func() error) (string, error) {
	own, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil || pid == 0 {
		return "", f()
	}
	path := fmt.Sprintf("%s/%d/ns/net", procfs.Root, pid)
	theirs, err := os.Readlink(path)
	if err != nil {
		return "", fmt.Errorf("pid %d's network namespace: %w", pid, err)
	}
	if theirs == own {
		return "", f()
	}
	return theirs, nshop.Do(path, f)
}

// readHost reads the host's limits on the calling thread, whose network
// namespace the net.* ones are read in (/proc/sys/net resolves by the
// calling thread's), and tcp_tw_reuse, which runner's Host leaves out.
func readHost() (runner.Host, NetLimits, error) {
	h, err := runner.ReadHost()
	if err != nil {
		return h, NetLimits{}, err
	}
	n := NetLimits{PortLo: h.PortLo, PortHi: h.PortHi, Somaxconn: h.Somaxconn, ConntrackMax: h.ConntrackMax,
		ConntrackCount: h.ConntrackCount, TCPMem: h.TCPMemPages, TCPRmem: h.TCPRmem}
	if v, err := sysctl.Read("net.ipv4.tcp_tw_reuse"); err == nil {
		n.TWReuse, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	return h, n, nil
}
