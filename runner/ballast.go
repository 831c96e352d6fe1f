package runner

// The ballast (--ballast SIZE) stands for the article's desktop and JVM
// heap: a process of the run's own that maps SIZE of anonymous memory,
// touches all of it, then touches pages at random at a steady rate, like
// an interactive program, timing each touch. As socket slab, which cannot
// be swapped, fills a smaller machine, the kernel pushes the ballast out to
// swap, and its touches start to wait on major faults: the article's
// lagging mouse, measured.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// ballastTouchRate is the ballast's touches a second: an interactive
// program's steady trickle of page accesses, each one timed.
const ballastTouchRate = 1000

// BallastResult is summary.json's ballast.
type BallastResult struct {
	Pid              int                 `json:"pid"`
	Bytes            uint64              `json:"bytes"`
	SwappedBytesPeak uint64              `json:"swapped_bytes_peak"` // VmSwap, polled
	ResidentAtPeak   uint64              `json:"resident_bytes_at_peak"`
	MajorFaults      uint64              `json:"major_faults"` // after the fill: touches that waited on swap
	Touches          uint64              `json:"touches"`
	TouchLatencyUs   worker.LatencyStats `json:"touch_latency_us"`
}

// ballast is the ballast process as the parent sees it: a host change
// (its memory taken from the machine), undone by ending it; killed with
// the run, it ends with it (Pdeathsig), so restore has nothing to do.
type ballast struct {
	bytes     uint64
	inMachine bool // --machine-mem checks it fits the smaller machine
	log       io.Writer
	onStart   func(pid int)

	cmd    *exec.Cmd
	pid    int
	exited chan struct{}

	mu         sync.Mutex
	last       worker.BallastReport
	swapPeak   uint64
	rss        uint64
	majAtFill  uint64
	stopPoll   chan struct{}
	pollExited chan struct{}
}

func (b *ballast) Name() string { return "ballast" }

// Check refuses a ballast larger than the memory available (a smaller
// machine's check counts it against the machine).
func (b *ballast) Check() error {
	m, err := procfs.ReadMeminfo()
	if err != nil || b.inMachine {
		return err
	}
	if b.bytes >= m.MemAvailable {
		return fmt.Errorf("--ballast %s is not below the %s available", units.Bytes(b.bytes), units.Bytes(m.MemAvailable))
	}
	return nil
}

// Apply starts the ballast and waits until it has touched all of its
// memory, so that the idle sample holds it.
func (b *ballast) Apply() error {
	exe, err := workerExe()
	if err != nil {
		return err
	}
	cfgJSON, _ := json.Marshal(worker.Config{Proto: worker.ProtoVersion, Role: Ballast, NoFile: 64, Bytes: b.bytes, TouchRate: ballastTouchRate})
	cmd := exec.Command(exe, worker.Arg)
	cmd.Stdin = bytes.NewReader(cfgJSON)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the ballast: %w", err)
	}
	b.cmd, b.pid, b.exited = cmd, cmd.Process.Pid, make(chan struct{})
	b.stopPoll, b.pollExited = make(chan struct{}), make(chan struct{})
	filled := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			var rep worker.BallastReport
			if json.Unmarshal(sc.Bytes(), &rep) != nil {
				continue
			}
			b.mu.Lock()
			b.last = rep
			b.mu.Unlock()
			if rep.Filled && !once {
				once = true
				close(filled)
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(b.exited) }()
	if b.onStart != nil {
		b.onStart(b.pid)
	}
	select {
	case <-filled:
	case <-b.exited:
		return fmt.Errorf("the ballast exited before it filled its %d bytes (%v)", b.bytes, cmd.ProcessState)
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("the ballast did not fill its %d bytes within 2 minutes", b.bytes)
	}
	if st, err := procfs.ReadStat(b.pid); err == nil {
		b.majAtFill = st.MajFlt
	}
	go b.poll()
	fmt.Fprintf(b.log, "ballast: %d bytes touched (pid %d); touching %d random pages a second\n", b.bytes, b.pid, ballastTouchRate)
	return nil
}

// poll follows the ballast's resident and swapped bytes.
func (b *ballast) poll() {
	defer close(b.pollExited)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stopPoll:
			return
		case <-b.exited:
			return
		case <-t.C:
		}
		rss, swap, err := procfs.VmMemory(b.pid)
		if err != nil {
			continue
		}
		b.mu.Lock()
		b.rss, b.swapPeak = rss, max(b.swapPeak, swap)
		b.mu.Unlock()
	}
}

// result is summary.json's ballast, read at the peak.
func (b *ballast) result() *BallastResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	res := &BallastResult{Pid: b.pid, Bytes: b.bytes, SwappedBytesPeak: b.swapPeak, ResidentAtPeak: b.rss,
		Touches: b.last.Touches, TouchLatencyUs: b.last.Latency}
	if st, err := procfs.ReadStat(b.pid); err == nil {
		res.MajorFaults = st.MajFlt - min(st.MajFlt, b.majAtFill)
	}
	return res
}

// Undo kills the ballast and reaps it.
func (b *ballast) Undo() error {
	if b.cmd == nil {
		return nil
	}
	close(b.stopPoll)
	<-b.pollExited
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
	return nil
}
