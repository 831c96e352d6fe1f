package bpf

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"golang.org/x/sys/unix"
)

// TracefsPath is where Open mounts tracefs.
const TracefsPath = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs (not mounted at boot on our machines) for
// classic tracepoints, which need its event ids, and for kprobes' tracefs
// fallback; Close unmounts it again if Open mounted it. The mount is named in
// the run directory before it is made, like the sysctl journal.
func (p *Probes) ensureTracefs() error {
	if _, err := os.Stat(TracefsPath + "/events"); err == nil {
		return nil
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return nil
	}
	if p.runDir != "" {
		if err := os.MkdirAll(p.runDir, 0o755); err != nil {
			return fmt.Errorf("creating run directory: %w", err)
		}
		if err := os.WriteFile(filepath.Join(p.runDir, rundir.Tracefs), []byte(TracefsPath+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := unix.Mount("tracefs", TracefsPath, "tracefs", 0, ""); err != nil {
		p.forgetTracefs()
		return fmt.Errorf("mounting tracefs at %s: %w", TracefsPath, err)
	}
	p.mountedFS = true
	return nil
}

func (p *Probes) unmountTracefs() error {
	if err := unix.Unmount(TracefsPath, 0); err != nil {
		return fmt.Errorf("unmounting %s: %w", TracefsPath, err)
	}
	p.forgetTracefs()
	return nil
}

func (p *Probes) forgetTracefs() {
	if p.runDir != "" {
		os.Remove(filepath.Join(p.runDir, rundir.Tracefs))
	}
}

// RestoreTracefs unmounts the tracefs a killed run in dir mounted, if any,
// and says what it did.
func RestoreTracefs(dir string) (string, error) {
	marker := filepath.Join(dir, rundir.Tracefs)
	if _, err := os.Stat(marker); err != nil {
		return "", nil
	}
	what := "tracefs at " + TracefsPath + " (unmounted)"
	// EINVAL: no longer mounted there.
	if err := unix.Unmount(TracefsPath, 0); err == unix.EINVAL {
		what = ""
	} else if err != nil {
		return "", fmt.Errorf("unmounting %s: %w", TracefsPath, err)
	}
	return what, os.Remove(marker)
}
