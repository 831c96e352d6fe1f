package bpf

import (
	"os"
	"strings"
)

// Report is what this kernel offers the probes.
type Report struct {
	BTF      bool   `json:"btf"`      // /sys/kernel/btf/vmlinux, needed for CO-RE
	Lockdown string `json:"lockdown"` // the active lockdown mode
	Tracefs  bool   `json:"tracefs"`  // mounted before we looked
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
