package main

// run --netns: both ends in a private network namespace. This process
// stays in the host's namespace, sizes the namespace's established hash
// (host.ChildEhash), and starts the run again inside a new namespace, which
// makes its net.* changes there: they end with it.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

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
	applied, err := host.ApplyAll(cfg.OutDir, changes)
	defer func() {
		for _, err := range host.UndoAll(applied) {
			fmt.Fprintf(stderr, "warning: %v; c10mprobe restore %s puts it back\n", err, cfg.OutDir)
		}
	}()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The same arguments, and the run directory this process made.
	cmd := exec.Command(exe, append(os.Args[1:], "--out", cfg.OutDir)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	// Its own process group: a terminal's ^C reaches this process alone,
	// which passes each signal on once. Killed, this process takes the run
	// down with it (SIGTERM: the run restores what it changed).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--netns: starting the run in a new network namespace: %w", err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			return fmt.Errorf("the run in the network namespace: %v", err) // killed
		}
		return &exitError{code: ee.ExitCode()}
	}
	return err
}
