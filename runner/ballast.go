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
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"golang.org/x/sys/unix"
)

// Ballast is the ballast process's role.
const Ballast Role = "ballast"

// ballastTouchRate is the ballast's touches a second: an interactive
// program's steady trickle of page accesses, each one timed.
const ballastTouchRate = 1000

// BallastResult is summary.json's ballast.
type BallastResult struct {
	Pid              int          `json:"pid"`
	Bytes            uint64       `json:"bytes"`
	SwappedBytesPeak uint64       `json:"swapped_bytes_peak"` // VmSwap, polled
	ResidentAtPeak   uint64       `json:"resident_bytes_at_peak"`
	MajorFaults      uint64       `json:"major_faults"` // after the fill: touches that waited on swap
	Touches          uint64       `json:"touches"`
	TouchLatencyUs   LatencyStats `json:"touch_latency_us"`
}

// LatencyStats are percentiles of the ballast's touch times.
type LatencyStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// ballastReport is what the ballast process prints once a second.
type ballastReport struct {
	Filled  bool         `json:"filled"`
	Touches uint64       `json:"touches"`
	Latency LatencyStats `json:"latency_us"`
}

// ballastMain is the ballast process.
func ballastMain(cfg workerConfig) int {
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	mem, err := unix.Mmap(-1, 0, int(cfg.Bytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe ballast: mmap %d bytes: %v\n", cfg.Bytes, err)
		return 1
	}
	page := os.Getpagesize()
	pages := len(mem) / page
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	out := json.NewEncoder(os.Stdout)
	var h latencyHistogram
	report := func(filled bool) {
		_ = out.Encode(ballastReport{Filled: filled, Touches: h.n, Latency: h.stats()})
	}
	report(true)
	tick := time.NewTicker(time.Second / time.Duration(max(1, cfg.TouchRate)))
	defer tick.Stop()
	last := time.Now()
	for range tick.C {
		p := rand.IntN(pages) * page
		start := time.Now()
		mem[p]++ // a write: a swapped page comes back, and must go out again
		h.add(time.Since(start))
		if time.Since(last) >= time.Second {
			report(true)
			last = time.Now()
		}
	}
	return 0
}

// latencyHistogram counts durations in buckets of 1/8 of a power of two
// (≤ 9 % wide), enough for p50 and p99 from a million touches.
type latencyHistogram struct {
	buckets [64 * 8]uint64
	n       uint64
	max     time.Duration
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(1, d))
	e := bits.Len64(ns) - 1
	frac := 0
	if e >= 3 {
		frac = int(ns>>(e-3)) & 7
	}
	return e*8 + frac
}

func (h *latencyHistogram) add(d time.Duration) {
	h.buckets[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latencyHistogram) quantile(q float64) time.Duration {
	want := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if c > 0 && seen >= want {
			e, frac := i/8, i%8
			// The bucket's upper edge.
			lo := uint64(1) << e
			if e >= 3 {
				lo |= uint64(frac) << (e - 3)
				return time.Duration(lo + (uint64(1) << (e - 3)))
			}
			return time.Duration(lo * 2)
		}
	}
	return 0
}

func (h *latencyHistogram) stats() LatencyStats {
	if h.n == 0 {
		return LatencyStats{}
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return LatencyStats{P50: us(h.quantile(0.5)), P99: us(h.quantile(0.99)), Max: us(h.max)}
}

// ballast is the ballast process as the parent sees it.
type ballast struct {
	bytes  uint64
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}

	mu         sync.Mutex
	last       ballastReport
	swapPeak   uint64
	rss        uint64
	majAtFill  uint64
	stopPoll   chan struct{}
	pollExited chan struct{}
}

// startBallast starts the ballast and waits until it has touched all of
// its memory, so that the idle sample holds it.
func (r *Runner) startBallast(exe string) error {
	cfgJSON, _ := json.Marshal(workerConfig{Proto: protoVersion, Role: Ballast, NoFile: 64, Bytes: r.cfg.Ballast, TouchRate: ballastTouchRate})
	cmd := exec.Command(exe, WorkerArg)
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
	b := &ballast{bytes: r.cfg.Ballast, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}),
		stopPoll: make(chan struct{}), pollExited: make(chan struct{})}
	r.ballast = b
	filled := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			var rep ballastReport
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
	if r.cfg.OnBallast != nil {
		r.cfg.OnBallast(b.pid)
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
	fmt.Fprintf(r.cfg.Log, "ballast: %d bytes touched (pid %d); touching %d random pages a second\n", b.bytes, b.pid, ballastTouchRate)
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

// stop kills the ballast and reaps it.
func (b *ballast) stop() {
	close(b.stopPoll)
	<-b.pollExited
	_ = b.cmd.Process.Kill()
	<-b.exited
}
