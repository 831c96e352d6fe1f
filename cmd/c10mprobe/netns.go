package main

// run --netns: both ends in a private network namespace. This process
// stays in the host's namespace, sizes the namespace's established hash
// (host.ChildEhash), and starts the run again inside a new namespace, which
// makes its net.* changes there: they end with it.

import (
	"fmt"
	"io"
	"os"

	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
)

// netnsEnv marks the run --netns started inside the namespace it made.
const netnsEnv = "C10MPROBE_IN_NETNS"

// inNetns says this process is the run --netns started in its namespace.
func inNetns() bool { return os.Getenv(netnsEnv) != "" }

// runInNetns is run --netns seen from the host: it checks the input as the
// run will (nothing changes before), sizes the namespace's hash, runs the
// run in a new namespace, and restores the host value on every exit.
func runInNetns(f *runFlags, stderr io.Writer) error {
	cfg := f.cfg
	cfg.InNetns = true
	if _, err := runner.Prepare(cfg); err != nil {
		if runner.IsBadInput(err) {
			return &exitError{exitBadInput, err}
		}
		return err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	changes := []host.Change{&host.ChildEhash{Dir: cfg.OutDir, Conns: cfg.Conns, Log: stderr}}
	if err := host.CheckAll(changes); err != nil {
		return &exitError{exitBadInput, err}
	}
	unmark, err := host.Mark(cfg.OutDir)
	if err != nil {
		return err
	}
	defer unmark()
	applied, err := host.ApplyAll(cfg.OutDir, changes)
	defer func() {
		for _, err := range host.UndoAll(applied) {
			fmt.Fprintf(stderr, "warning: %v; c10mprobe restore %s puts it back\n", err, cfg.OutDir)
		}
	}()
	if err != nil {
		return err
	}
	// The same arguments, and the run directory this process made.
	code, err := host.RunInNewNetns(append(os.Args[1:], "--out", cfg.OutDir), netnsEnv+"=1")
	if err == nil && code != 0 {
		return &exitError{code: code}
	}
	return err
}
