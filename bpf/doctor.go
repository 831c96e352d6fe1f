package bpf

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Report is what this kernel offers the probes.
type Report struct {
	BTF      bool   `json:"btf"`      // /sys/kernel/btf/vmlinux, needed for CO-RE
	Lockdown string `json:"lockdown"` // the active lockdown mode
	Tracefs  bool   `json:"tracefs"`  // mounted before we looked
	// ProgramTiming is "ok", or why the kernel cannot time programs for
	// run --probe-cost.
	ProgramTiming string `json:"program_timing"`
	// Forced says, per backend, whether every hook that has a program for it
	// attaches with it, or why not.
	Forced map[Backend]string `json:"forced"`
	// Auto is how `run` attaches each hook: the first backend that works.
	Auto  []Attachment `json:"auto"`
	Error string       `json:"error,omitempty"` // why auto failed, if it did
}

// Diagnose tries every backend for real (load and attach, then detach).
func Diagnose() Report {
	r := Report{Forced: map[Backend]string{}}
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	r.BTF = err == nil
	r.Lockdown = "unknown (securityfs is not mounted and the command line does not say)"
	if data, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		// "none [integrity] confidentiality": the bracketed one is active.
		s := string(data)
		if i, j := strings.Index(s, "["), strings.Index(s, "]"); i >= 0 && j > i {
			r.Lockdown = s[i+1 : j]
		}
	} else if data, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(data)) {
			if v, ok := strings.CutPrefix(f, "lockdown="); ok {
				r.Lockdown = v + " (from the kernel command line)"
			}
		}
	}
	_, err = os.Stat("/sys/kernel/tracing/events")
	r.Tracefs = err == nil
	r.ProgramTiming = "ok"
	if c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
		r.ProgramTiming = fmt.Sprintf("BPF_ENABLE_STATS: %v", err)
	} else {
		c.Close()
	}
	for _, b := range Backends {
		p, err := Open(Config{Backend: b, RunPort: 1})
		if err != nil {
			r.Forced[b] = err.Error()
			continue
		}
		r.Forced[b] = "ok"
		p.Close()
	}
	p, err := Open(Config{RunPort: 1})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Auto = p.Attachments()
	p.Close()
	return r
}

// WriteText writes the report for a terminal: what the kernel offers, each
// backend forced in turn, and what a run will use hook by hook.
func (rep Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "BTF /sys/kernel/btf/vmlinux: %v\nlockdown: %s\ntracefs mounted: %v (c10mprobe mounts it for a run when a backend needs it)\nprogram timing (run --probe-cost): %s\n\n", rep.BTF, rep.Lockdown, rep.Tracefs, rep.ProgramTiming)
	fmt.Fprintln(w, "Backends, each forced in turn (load and attach for real):")
	for _, b := range Backends {
		fmt.Fprintf(w, "  %-15s %s\n", b, rep.Forced[b])
	}
	if rep.Error != "" {
		fmt.Fprintf(w, "\nrun cannot attach its probes: %s\n", rep.Error)
	} else {
		fmt.Fprintln(w, "\nWhat run will use, hook by hook (first backend that attaches):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range rep.Auto {
			var why []string
			for b, e := range a.Failures {
				why = append(why, fmt.Sprintf("%s: %s", b, e))
			}
			sort.Strings(why)
			fmt.Fprintf(tw, "  %s\t%s\t%v\n", a.Hook, a.Backend, why)
		}
		tw.Flush()
	}
}
