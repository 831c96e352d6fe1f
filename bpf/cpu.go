package bpf

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"os"
	"sort"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// cpuSampler samples the run's processes' kernel and user stacks with a
// perf_event program on every CPU's cpu-clock.
type cpuSampler struct {
	prog *ebpf.Program
	fds  []int
}

// StartCPU starts sampling at hz per CPU. Where the kernel refuses perf
// events (perf_event_paranoid, no PMU in a VM) it says why and nothing runs.
func (p *Probes) StartCPU(hz uint64) error {
	if p.cpu != nil {
		return nil
	}
	prog, err := p.loadProgram(p.spec, "perf_cpu_sample")
	if err != nil {
		return fmt.Errorf("loading the CPU sampler: %w", err)
	}
	s := &cpuSampler{prog: prog}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample: hz,
		Bits:   unix.PerfBitFreq | unix.PerfBitDisabled,
	}
	// Every online CPU by its id: the run's softirqs and its workers run on
	// any of them, whatever this process's affinity mask.
	cpus, err := procfs.OnlineCPUs()
	if err != nil {
		return fmt.Errorf("listing the online CPUs: %w", err)
	}
	for _, cpu := range cpus {
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			s.stop()
			return fmt.Errorf("perf_event_open(cpu-clock, cpu %d): %w", cpu, err)
		}
		s.fds = append(s.fds, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, s.prog.FD()); err != nil {
			s.stop()
			return fmt.Errorf("attaching the CPU sampler: %w", os.NewSyscallError("ioctl(PERF_EVENT_IOC_SET_BPF)", err))
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			s.stop()
			return os.NewSyscallError("ioctl(PERF_EVENT_IOC_ENABLE)", err)
		}
	}
	p.cpu = s
	return nil
}

// StopCPU stops sampling; the samples stay readable.
func (p *Probes) StopCPU() {
	if p.cpu != nil {
		p.cpu.stop()
		p.cpu = nil
	}
}

func (s *cpuSampler) stop() {
	for _, fd := range s.fds {
		_ = unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_DISABLE, 0)
		unix.Close(fd)
	}
	s.fds = nil
	if s.prog != nil {
		s.prog.Close()
	}
}

// CPUStack is one sampled stack: kernel frames, then user frames, innermost
// first, and how many samples hit it.
type CPUStack struct {
	Kernel  []uint64
	User    []uint64
	Phase   uint32 // what SetPhase said when it was sampled
	Image   Image  // the executable whose addresses User holds
	Samples uint64
}

// Image is which executable a process of the run runs: its CPU samples'
// user frames are addresses in that file.
type Image uint8

const (
	ImageParent Image = 1 // c10mprobe itself
	ImageWorker Image = 2 // the workers' executable (c10mprobe-worker, or c10mprobe)
)

// SetPhase tags the CPU samples taken from now on with phase.
func (p *Probes) SetPhase(phase uint32) error {
	if err := p.maps.RunPhase.Put(uint32(0), phase); err != nil {
		return fmt.Errorf("setting the run's phase: %w", err)
	}
	return nil
}

// CPUStacks returns the CPU samples, most frequent first.
func (p *Probes) CPUStacks() ([]CPUStack, error) {
	var out []CPUStack
	var key probesCpuKey
	var n uint64
	it := p.maps.CpuSamples.Iterate()
	for it.Next(&key, &n) {
		s := CPUStack{Samples: n, Phase: key.Phase, Image: Image(key.Image)}
		s.Kernel = p.frames(p.maps.CpuStacks, key.Kstack)
		s.User = p.frames(p.maps.CpuStacks, key.Ustack)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Samples > out[j].Samples })
	return out, it.Err()
}

func (p *Probes) frames(m *ebpf.Map, id int32) []uint64 {
	if id < 0 {
		return nil
	}
	var raw [127]uint64
	if err := m.Lookup(uint32(id), &raw); err != nil {
		return nil // evicted: the kernel side counted it as lost
	}
	n := 0
	for n < len(raw) && raw[n] != 0 {
		n++
	}
	return append([]uint64(nil), raw[:n]...)
}
