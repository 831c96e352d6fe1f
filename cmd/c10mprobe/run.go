package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/spf13/pflag"
)

const runExamples = `  sudo c10mprobe run --conns 100000
  sudo c10mprobe run --conns 1000000 --hold 30s          # then look with ss -s, slabtop
  sudo c10mprobe run --conns 50000 --src 127.0.0.2 --port-range 40000-40999   # ports bind first
  sudo c10mprobe run --conns 5000 --worker-fds 100 --max-workers 2            # fds bind first
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/a       # buffers held...
  sudo c10mprobe run --conns 50000 --payload 16KiB --unread --out runs/b --sysctl net.ipv4.tcp_rmem="4096 4096 4096"
  c10mprobe compare runs/a runs/b                                               # ...and what tcp_rmem changed
  sudo c10mprobe run --conns 20000 --target 127.0.0.1:8080 --server-cmd 'ulimit -n 4096; exec ./myserver' --exchange echo
  sudo c10mprobe run --conns 50000 --target 127.0.0.1:80 --server-pid $(pgrep -o nginx) --hold 10s   # your server, held
`

const serveExamples = `  sudo c10mprobe serve --listen 0.0.0.0:9999 --conns 100000                    # then dial from other hosts
  sudo c10mprobe serve --listen 198.18.0.1:9999 --conns 50000 --wait 10m --hold 30s
`

const dialExamples = `  sudo c10mprobe dial --target 198.18.0.1:9999 --conns 100000 --index 0 --of 4   # one dialer of four
  sudo c10mprobe dial --target 198.18.0.1:9999 --conns 100000 --of 4              # index from JOB_COMPLETION_INDEX
`

func runCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeRun, args, stdout, stderr)
}
func serveCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeServe, args, stdout, stderr)
}
func dialCmd(args []string, stdout, stderr io.Writer) error {
	return modeCmd(runner.ModeDial, args, stdout, stderr)
}

// modeCmd is run, serve and dial: one run of the runner, recorded and explained.
func modeCmd(mode runner.Mode, args []string, stdout, stderr io.Writer) error {
	f, err := parseModeFlags(mode, args, stdout)
	if err != nil {
		return err
	}
	unlock, err := takeHost(f, stderr)
	if err != nil {
		return err
	}
	defer unlock()
	if f.netns && !inNetns() {
		return runInNetns(f, stderr)
	}
	if inNetns() {
		if err := host.UpLoopback(); err != nil {
			return fmt.Errorf("--netns: bringing up lo in the run's network namespace: %w", err)
		}
		f.cfg.InNetns = true
	}
	prog := newProgress(stderr)
	ctx, running, stop := takeSignals(prog)
	defer stop()
	// The recorder reads the probes, which are sized by the plan Prepare
	// makes; the runner calls it only once it runs.
	var rec *record.Recorder
	cfg := f.cfg
	cfg.Hooks = hooks(&rec, prog, stderr)
	r, err := runner.Prepare(cfg)
	if err != nil {
		return err
	}
	var probes *bpf.Probes
	if !f.noBPF {
		probes, err = record.OpenProbes(r, record.ProbeOptions{Backend: f.backend, Kmem: f.kmem, TimePrograms: f.probeCost}, stderr)
		if err != nil && f.backend != "" {
			return &exitError{exitBadInput, err}
		}
		if err != nil {
			return err
		}
	}
	if probes != nil {
		defer probes.Close()
	}
	rec = record.New(probes)
	if probes != nil {
		rec.SetKmem(f.kmem)
		if census := record.CensusSize(f.kmem, r); census < r.Conns() {
			r.SetCensus(census, rec.Census)
		}
	}
	record.WritePreflight(stderr, r.Preflight())
	if ctx.Err() != nil {
		// The probes' tracefs mount, if any, goes with probes.Close.
		return errors.New("interrupted before the first connection: nothing was opened, and the host is as it was")
	}
	running.Store(r)
	res, err := r.Run(ctx)
	prog.done()
	if res == nil {
		return err
	}
	run := rec.Finish(res, r.Preflight(), r.Host(), stderr)
	if werr := run.Write(cfg.OutDir); werr != nil && err == nil {
		err = werr
	}
	run.WriteText(stdout, cfg.OutDir)
	if err != nil {
		return err
	}
	if int(res.Verified) != res.Requested {
		return errNotAll
	}
	return nil
}

// takeHost takes the host for the run (in --netns's namespace, the process
// that made it holds it) and refuses it while a killed run has left it
// changed: this run would measure that host, and restore it to that.
func takeHost(f *runFlags, stderr io.Writer) (unlock func(), err error) {
	unlock = func() {}
	if !inNetns() {
		if unlock, err = host.LockHost(); err != nil {
			return nil, badInput("%v; runs change host-wide sysctls and must not overlap", err)
		}
	}
	switch dir, left := runner.Unrestored(); {
	case !f.noBPF && os.Geteuid() != 0:
		err = badInput("the eBPF probes need root: rerun with sudo, or pass --no-bpf")
	case dir != "" && !inNetns():
		err = badInput("the run in %s was killed before it put the host back (%s): run sudo c10mprobe restore %s first", dir, strings.Join(left, "; "), dir)
	case !inNetns():
		for _, note := range runner.KilledRuns(filepath.Dir(f.cfg.OutDir)) {
			fmt.Fprintln(stderr, "note: "+note)
		}
	}
	if err != nil {
		unlock()
	}
	return unlock, err
}

// hooks tell the recorder, once there is one in *rec, and the terminal
// what the run does.
func hooks(rec **record.Recorder, prog *progress, stderr io.Writer) runner.Hooks {
	return runner.Hooks{
		Log:        stderr,
		OnPhase:    func(ph runner.Phase) error { return (*rec).Phase(ph) },
		OnSpawn:    func(pid int) error { return (*rec).AddPID(pid) },
		OnServerUp: func(checks []runner.Check) { record.WriteChecks(stderr, "Server: the limits it will meet", checks) },
		OnBallast:  func(pid int) { (*rec).SetBallast(pid) },
		OnProgress: func(p runner.Progress) { (*rec).Progress(p); prog.update(p) },
	}
}

// takeSignals takes the signals that end a run, from before the probes load
// (seconds on a slow machine): SIGHUP (a closed terminal, a dropped ssh)
// and SIGQUIT end a run as SIGINT does, where their default would leave
// the host's sysctls changed or a tracefs mount behind. The first cancels
// ctx; the second aborts the runner set in running.
func takeSignals(prog *progress) (ctx context.Context, running *atomic.Pointer[runner.Runner], stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	running = new(atomic.Pointer[runner.Runner])
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	// A write to a closed pipe on stdout or stderr (`run | tee`, tee gone)
	// would end the run by SIGPIPE with the host changed; with SIGPIPE
	// taken, the write fails with EPIPE and the run goes on to restore.
	// Never read: signal.Notify does not block on a full channel.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go func() {
		s := <-sigs
		prog.note(fmt.Sprintf("%v: stopping, verifying what is held, restoring (again to abort)", s))
		cancel()
		<-sigs
		prog.note("second signal: killing workers, restoring")
		if r := running.Load(); r != nil {
			r.Abort()
		}
	}()
	return ctx, running, func() { signal.Stop(sigs); cancel() }
}

func restoreCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	examples := "  sudo c10mprobe restore runs/20261125T190102Z\n  sudo c10mprobe restore          # every run killed before it put the host back\n"
	if err := parseFlags(fs, args, stdout, examples); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return badInput("give one run directory, or none for every run killed before it put the host back")
	}
	unlock, err := host.LockHost()
	if err != nil {
		return fmt.Errorf("%v; restore after it ends", err)
	}
	defer unlock()
	dirs := host.Killed()
	if fs.NArg() == 1 {
		dirs = []string{fs.Arg(0)}
	} else if len(dirs) == 0 {
		fmt.Fprintf(stdout, "no run was killed before it put the host back (%s names none)\n", host.MarkerDir)
		return nil
	}
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, record.RestoreAndSay(dir, stdout))
	}
	return errors.Join(errs...)
}
