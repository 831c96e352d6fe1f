package bpf

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Cost is what one attached program cost the kernel so far: runs and run
// time while TimePrograms holds (zero otherwise), recursion misses always.
type Cost struct {
	Hook            string        `json:"hook"`
	Runs            uint64        `json:"runs"`
	Runtime         time.Duration `json:"runtime_ns"`
	RecursionMisses uint64        `json:"recursion_misses"` // runs skipped: another program was running on the CPU
}

// TimePrograms makes the kernel time every eBPF program's runs
// (BPF_ENABLE_STATS, Linux 5.8). The accounting is held by a file
// descriptor, so it ends with Close or with the process, whatever kills it:
// unlike the kernel.bpf_stats_enabled sysctl, nothing is left to restore.
// Timing adds two clock reads to every run.
func (p *Probes) TimePrograms() error {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enabling eBPF run-time stats (BPF_ENABLE_STATS, Linux 5.8): %w", err)
	}
	p.stats = c
	return nil
}
