package analysis

// A comparison in words: what the later run set differently, and which
// quantities moved beyond what two runs of one command differ by.

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// floor is a quantity's run-to-run noise: a difference no larger than
// rel of the first run's value, or abs, is not an effect.
type floor struct{ rel, abs float64 }

// noiseFloors are set from four runs of one command on a 2-core, 24 GB VM
// (`run --conns 10000 --payload 16KiB --unread`, 2026-12-06;
// docs/measurements.md, "Run-to-run noise"), a little above the spread
// seen: connects a second 22 %, verified a second 16 %, user space
// 874–2,020 B a connection (the workers' Go heaps), kernel memory 18 %
// (proc_inode_cache 0 → 1,388 B a connection and dentry +382 B while
// another program read the workers' /proc/PID/fd); the sockets' own
// caches, buffers, tcp_mem and the first limit within 1 %.
var noiseFloors = map[string]floor{
	"connect_rate": {0.25, 0}, "verified_rate": {0.20, 0},
	"kernel_per_conn": {0.20, 0}, "user_per_conn": {0, 1200}, "runner_pss_per_conn": {0.05, 0},
	"queued_per_conn": {0.02, 0}, "tcp_mem_per_conn": {0.02, 0}, "binds_at": {0.02, 0},
	"user: anonymous memory, all processes": {0, 1200}, "unexplained: growth not accounted above": {1, 100},
	// Caches that a program reading /proc fills, as connections do not.
	"slab: proc_inode_cache": {1, 1500}, "slab: dentry": {0.05, 400}, "slab: lsm_inode_cache": {0.05, 70},
	"slab: free space in slab pages": {0.30, 70}, "pages: page tables": {0.5, 20},
}

// noiseFloor is a row's noise; a ledger line not listed above is noise
// below 5 % or 16 B a connection, as kmalloc caches moved here.
func noiseFloor(name string) floor {
	if f, ok := noiseFloors[name]; ok {
		return f
	}
	if strings.HasPrefix(name, "slab: kmalloc-") {
		return floor{0.05, 40}
	}
	return floor{0.05, 16}
}

// meanings say what a ledger line's growth is, for the sentence.
var meanings = map[string]string{
	"TCP": "the TCP socks", "TCPv6": "the TCPv6 socks", "sock_inode_cache": "socket inodes",
	"skbuff_fclone_cache": "skbs sent and not yet acknowledged or read: data waiting in the senders' queues",
	"skbuff_small_head":   "small skb heads: the data held as many small skbs",
	"skbuff_head_cache":   "skb heads", "proc_inode_cache": "/proc inodes: a program reading /proc, not the connections",
	"queued socket data outside slab": "socket buffers' data (sock_diag)",
}

func meaning(name string) string {
	for k, v := range meanings {
		if name == k || strings.HasPrefix(name, k+" ") {
			return v
		}
	}
	return ""
}

// changes says how run i differs from the first.
func (c Comparison) changes(i int) string {
	var set, unset []string
	for _, s := range c.Settings[i] {
		if !slices.Contains(c.Settings[0], s) {
			set = append(set, s)
		}
	}
	for _, s := range c.Settings[0] {
		if !slices.Contains(c.Settings[i], s) {
			unset = append(unset, s)
		}
	}
	out := fmt.Sprintf("run %d against run 1: ", i+1)
	switch {
	case len(set)+len(unset) == 0:
		out += "the same settings"
	default:
		var parts []string
		if len(set) > 0 {
			parts = append(parts, "set "+strings.Join(set, ", "))
		}
		if len(unset) > 0 {
			parts = append(parts, "without "+strings.Join(unset, ", "))
		}
		out += strings.Join(parts, "; ")
	}
	var moved, lines []Row
	quiet := 0
	for _, r := range c.Rows {
		switch {
		case r.Diff[i] == 0:
		case r.Noise[i]:
			quiet++
		case strings.Contains(r.Name, ": "):
			lines = append(lines, r)
		default:
			moved = append(moved, r)
		}
	}
	sort.SliceStable(lines, func(a, b int) bool { return math.Abs(lines[a].Diff[i]) > math.Abs(lines[b].Diff[i]) })
	var said []string
	for _, r := range moved {
		said = append(said, fmt.Sprintf("%s %s (%s → %s)", r.Label, pctText(r.Pct[i], r.Diff[i]), quantity(r.Values[0], r.Unit), quantity(r.Values[i], r.Unit)))
	}
	var why []string
	for _, r := range lines[:min(3, len(lines))] {
		name := r.Name[strings.Index(r.Name, ": ")+2:]
		w := fmt.Sprintf("%s %s a connection", name, plusBytes(r.Diff[i]))
		if m := meaning(name); m != "" {
			w += " (" + m + ")"
		}
		why = append(why, w)
	}
	switch {
	case len(said)+len(why) == 0:
		out += ". Nothing moved beyond run-to-run noise"
	default:
		out += ". Beyond run-to-run noise: " + strings.Join(said, "; ")
		if len(why) > 0 {
			out += ". By ledger line: " + strings.Join(why, "; ")
		}
	}
	if quiet > 0 {
		out += fmt.Sprintf(". %d more differences are within noise", quiet)
	}
	return out + "."
}

func plusBytes(d float64) string {
	if d >= 0 {
		return "+" + signedBytes(int64(d))
	}
	return signedBytes(int64(d))
}

func pctText(pct *float64, d float64) string {
	if pct == nil {
		return fmt.Sprintf("%+.0f", d)
	}
	return fmt.Sprintf("%+.0f %%", *pct)
}

func quantity(v float64, unit string) string {
	switch unit {
	case "B/conn", "B":
		return units.Bytes(uint64(max(0, math.Round(v))))
	case "conns/s":
		return units.Count(uint64(max(0, v))) + "/s"
	}
	return units.Count(uint64(max(0, v)))
}
