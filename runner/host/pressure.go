package host

import (
	"fmt"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Pressure is the share of the last seconds in which every task waited for
// memory, from PSI's cumulative stall time read by the run itself: avg10
// would carry the stalls of whatever ran before the run for a minute.
type Pressure struct {
	mu      sync.Mutex
	samples []stallSample
}

type stallSample struct {
	at    time.Time
	stall time.Duration
}

// PressureWindow is what the share is taken over: PSI's own avg10 span.
const PressureWindow = 10 * time.Second

// Share reads PSI now and returns the stalled share of the window (0–100);
// ok is false until a window has passed, or where PSI is off.
func (p *Pressure) Share() (pct float64, ok bool) { return p.ShareOver(PressureWindow) }

// ShareOver is Share over the last d, at most PressureWindow: the smaller
// machine's pacing looks at the last second.
func (p *Pressure) ShareOver(d time.Duration) (pct float64, ok bool) {
	stall, ok := procfs.MemoryStall()
	if !ok {
		return 0, false
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, stallSample{now, stall})
	// Keep the newest sample at least a window old, and those after it.
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= PressureWindow {
		p.samples = p.samples[1:]
	}
	for i := len(p.samples) - 1; i >= 0; i-- {
		if first := p.samples[i]; now.Sub(first.at) >= d {
			return 100 * float64(stall-first.stall) / float64(now.Sub(first.at)), true
		}
	}
	return 0, false
}

// memoryPressureStop is the PSI "full" share at which a run stops opening: a
// tenth of the time with every task stalled on memory is a host in trouble.
const memoryPressureStop = 10.0

// Reserve guards the host's spare memory (--reserve) and its PSI: the
// guard of every run but a smaller machine's, whose own replaces it.
type Reserve struct {
	Bytes    uint64
	Pressure *Pressure
}

// Guard trips on spare memory below the reserve, or PSI saying every task
// is stalled on memory.
func (r Reserve) Guard() (limit.Kind, string) {
	if m, err := procfs.ReadMeminfo(); err == nil && m.Spare() < r.Bytes {
		return limit.MemoryReserve, fmt.Sprintf("spare memory (free + page cache; MemAvailable %s also counts the sockets' pinned dentries and inodes) fell to %s, below the reserve of %s (--reserve): the host is guarded before it runs out",
			units.Bytes(m.MemAvailable), units.Bytes(m.Spare()), units.Bytes(r.Bytes))
	}
	if full, ok := r.Pressure.Share(); ok && full >= memoryPressureStop {
		return limit.MemoryPressure, fmt.Sprintf("every task waited for memory %.0f %% of the last %s (PSI full): the kernel is reclaiming; stopped before it stalls the host", full, PressureWindow)
	}
	return "", ""
}
