package bpf

import (
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// attach loads and attaches the first of the hook's programs that works,
// in backend order, or the forced backend's, and keeps every failure.
func (p *Probes) attach(spec *ebpf.CollectionSpec, h hook, force Backend) error {
	a := Attachment{Hook: h.name, Failures: map[string]string{}}
	var errs []error
	for _, v := range h.variants {
		if force != "" && v.backend != force && hasVariant(h, force) {
			continue
		}
		l, prog, err := p.loadAndAttach(spec, v)
		if err != nil {
			a.Failures[string(v.backend)] = err.Error()
			errs = append(errs, err)
			continue
		}
		p.links, p.progs, p.progHooks = append(p.links, l), append(p.progs, prog), append(p.progHooks, h.name)
		a.Backend = v.backend
		break
	}
	p.attachments = append(p.attachments, a)
	if a.Backend == "" {
		var why []string
		for b, e := range a.Failures {
			why = append(why, b+": "+e)
		}
		sort.Strings(why)
		err := fmt.Errorf("no backend attaches %s (%s)", h.name, strings.Join(why, "; "))
		if allUnsupported(errs) {
			err = fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return err
	}
	return nil
}

func allUnsupported(errs []error) bool {
	for _, e := range errs {
		if !errors.Is(e, ErrUnsupported) {
			return false
		}
	}
	return len(errs) > 0
}

func hasVariant(h hook, b Backend) bool {
	for _, v := range h.variants {
		if v.backend == b {
			return true
		}
	}
	return false
}

// loadAndAttach loads one program, sharing the maps already created, and
// attaches it; only programs that are used get loaded.
func (p *Probes) loadAndAttach(spec *ebpf.CollectionSpec, v variant) (link.Link, *ebpf.Program, error) {
	if v.backend == Kprobe && noKprobes() {
		// Checked before tracefs is mounted for kprobes' sake.
		return nil, nil, errNoKprobes
	}
	if v.backend == Kprobe || v.backend == Tracepoint {
		// cilium/ebpf looks tracefs up once per process, at the first
		// kprobe (its fallback) or tracepoint: mount it before that.
		if err := p.ensureTracefs(); err != nil {
			return nil, nil, err
		}
	}
	if (v.backend == RawTracepoint || v.backend == Tracepoint) && !kernelHasTracepoint(v.target) {
		return nil, nil, fmt.Errorf("%w: this kernel has no tracepoint %s (no btf_trace_%s in its BTF)", ErrUnsupported, v.target, v.target)
	}
	prog, err := p.loadProgram(spec, v.prog)
	if err != nil {
		if v.backend == Fentry && errors.Is(err, unix.EPERM) {
			// Kernels without fentry support, or that lock tracing programs
			// down, refuse BPF_PROG_TYPE_TRACING loads with EPERM.
			return nil, nil, fmt.Errorf("%w: this kernel refuses fentry programs (loading BPF_PROG_TYPE_TRACING %s: EPERM)", ErrUnsupported, v.prog)
		}
		return nil, nil, fmt.Errorf("loading %s: %w", v.prog, unwrapVerifier(err))
	}
	var l link.Link
	switch v.backend {
	case Fentry:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	case Kprobe:
		l, err = link.Kprobe(v.target, prog, nil)
	case RawTracepoint:
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: v.target, Program: prog})
	case Tracepoint:
		l, err = link.Tracepoint(v.group, v.target, prog, nil)
	}
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("attaching %s %s: %w", v.backend, v.target, err)
	}
	return l, prog, nil
}

// loadProgram loads one program of spec alone, sharing the maps already
// created: only programs that are used get loaded.
func (p *Probes) loadProgram(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, error) {
	one := spec.Copy()
	for n := range one.Programs {
		if n != name {
			delete(one.Programs, n)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: p.maps.byName(), Cache: p.btfCache})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(name), nil
}

// kernelHasTracepoint looks the tracepoint up in the kernel's BTF: every
// tracepoint has a btf_trace_<name> typedef there (Linux 5.5+, commit
// e8c423fb31fa "bpf: Add typed BTF ID for raw tracepoints"), and one the
// kernel lacks (tcp_sendmsg_locked came in 6.11) fails to attach or, through
// CO-RE, to load. Without BTF the attach itself is the test.
func kernelHasTracepoint(name string) bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return true
	}
	_, err = spec.AnyTypeByName("btf_trace_" + name)
	return !errors.Is(err, btf.ErrNotFound)
}

// ErrUnsupported wraps a backend this kernel does not offer, as opposed to a
// program that failed to load or attach where the backend exists.
var ErrUnsupported = errors.New("not offered by this kernel")

var errNoKprobes = fmt.Errorf("%w: this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices and no register_kprobe in /proc/kallsyms: CONFIG_KPROBES is off)", ErrUnsupported)

// noKprobes reports a kernel built without kprobes: no kprobe PMU (Linux
// 4.17+) and no register_kprobe symbol.
func noKprobes() bool {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err == nil {
		return false
	}
	data, err := os.ReadFile("/proc/kallsyms")
	return err == nil && !strings.Contains(string(data), " register_kprobe\n")
}

func unwrapVerifier(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		return fmt.Errorf("%w (verifier: %s)", err, ve.Log[len(ve.Log)-1])
	}
	return err
}
