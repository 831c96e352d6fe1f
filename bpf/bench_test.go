package bpf

import (
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackConnection times one loopback connection's whole life in
// one thread (socket, connect, accept, a 4-byte message each way, close),
// in blocks rotating between no probes, the probes as a run keeps them
// after its census (--kmem census: no slab hooks) and all of them (--kmem
// full). The difference is what the probes cost a connection, dispatch
// included, which the kernel's own program timing (run --probe-cost)
// leaves out; the fastest block of each kind is compared, the least
// disturbed by the rest of this noisy machine, and the slowest is printed
// beside it as the spread.
func BenchmarkLoopbackConnection(b *testing.B) {
	testenv.NeedRoot(b, "runs the tool for real")
	const port, rounds, perBlock = 19970, 8, 20000
	lo, hi := portRangeB(b)
	ln := listenLoopback(b, port)
	defer unix.Close(ln)
	// after-census: what a run keeps once its census is taken, the slab
	// hooks detached and the CPU sampler on; full: every hook (--kmem full)
	// and the sampler.
	kinds := []string{"none", "after-census", "full"}
	times := map[string][]time.Duration{}
	for range rounds {
		for _, kind := range kinds {
			var p *Probes
			if kind != "none" {
				var err error
				p, err = Open(Config{
					Conns: 100000, RunPort: port, // sampling sized as for a 100k run
					Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, PortLo: lo, PortsPerSource: hi - lo + 1,
				})
				if err != nil {
					b.Fatal(err)
				}
				if err := p.AddPID(os.Getpid(), ImageParent); err != nil {
					b.Fatal(err)
				}
				if kind == "after-census" {
					if err := p.DetachKmem(); err != nil {
						b.Fatal(err)
					}
				}
				if err := p.StartCPU(99); err != nil { // the run's rate (record)
					b.Logf("no CPU sampler: %v", err)
				}
			}
			t0 := time.Now()
			for range perBlock {
				oneConnection(b, ln, port)
			}
			times[kind] = append(times[kind], time.Since(t0)/perBlock)
			if p != nil {
				p.Close()
			}
		}
	}
	off := slices.Min(times["none"])
	b.Logf("%d blocks of %d connections each, fastest (slowest) a connection: none %v (%v)", rounds, perBlock, off, slices.Max(times["none"]))
	for _, kind := range kinds[1:] {
		on := slices.Min(times[kind])
		b.Logf("  probes, %s: %v (%v): rate %.3f of none, %v a connection", kind, on, slices.Max(times[kind]), float64(off)/float64(on), on-off)
		b.ReportMetric(float64(off)/float64(on), "rate-"+kind+"/none")
	}
}

func oneConnection(b *testing.B, ln, port int) {
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Connect(c, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	s, _, err := unix.Accept(ln)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte{0, 0, 0, 1}
	var buf [4]byte
	for _, fds := range [][2]int{{c, s}, {s, c}} {
		if _, err := unix.Write(fds[0], msg); err != nil {
			b.Fatal(err)
		}
		if _, err := unix.Read(fds[1], buf[:]); err != nil {
			b.Fatal(err)
		}
	}
	// RST instead of FIN: no TIME_WAIT socket keeps the port, so the
	// loop cannot run out of them.
	if err := unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		b.Fatal(err)
	}
	unix.Close(c)
	unix.Close(s)
}

func listenLoopback(b *testing.B, port int) int {
	b.Helper()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		b.Fatal(err)
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	if err := unix.Listen(ln, 128); err != nil {
		b.Fatal(err)
	}
	return ln
}
