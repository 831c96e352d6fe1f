package main

// run --netns: both ends in a private network namespace. This process
// stays in the host's namespace, sets net.ipv4.tcp_child_ehash_entries
// (read when a namespace is made, so it must be the host's) in a journal of
// its own, and starts the run again inside a new namespace, which makes
// its net.* changes there: they end with it and nothing of them is the
// host's to restore.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"github.com/c10mprobe/c10mprobe/runner"
)

// netnsEnv marks the run --netns started inside the namespace it made.
const netnsEnv = "C10MPROBE_IN_NETNS"

// childEhashKey sizes the established hash of namespaces made from now on
// (Linux 6.1, commit d1e5e6408b30); 0 shares the host's.
const childEhashKey = "net.ipv4.tcp_child_ehash_entries"

// childEhash is the buckets for conns connections, both ends in the
// namespace: a power of two of at least one bucket a socket, within the
// kernel's 16M most (tcp_child_ehash_entries_max).
func childEhash(conns int) int {
	n := 1 << 10
	for n < 2*conns && n < 16<<20 {
		n *= 2
	}
	return n
}

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
	j := sysctl.NewJournal(filepath.Join(cfg.OutDir, rundir.NetnsJournal))
	defer func() {
		if err := j.Restore(); err != nil {
			fmt.Fprintf(stderr, "warning: restoring %s: %v\n", childEhashKey, err)
		}
	}()
	if _, err := j.Set(childEhashKey, strconv.Itoa(childEhash(cfg.Conns))); err != nil {
		return fmt.Errorf("--netns: %v (Linux 6.1 or later)", err)
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

// upLoopback brings up lo in this process's new network namespace, where
// it starts down.
func upLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return os.NewSyscallError("SIOCSIFFLAGS lo", unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr))
}
