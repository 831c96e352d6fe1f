package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/c10mprobe/c10mprobe/runner"
	"golang.org/x/sys/unix"
)

// progress draws run progress on stderr: redrawn in place on a terminal,
// a line every 5 s otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	mu       sync.Mutex
	last     time.Time
	lastLine string
	printed  bool // lastLine has been written
	drawn    bool
	phase    runner.Phase // of the last update
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) update(s runner.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("%-8s %d/%d established, %d verified, %d failed, %.0f conn/s, %s elapsed",
		s.Phase, s.Established, s.Requested, s.Verified, s.Failed, s.Rate, s.Elapsed.Round(100*time.Millisecond))
	switch {
	case s.Phase == runner.PhaseHold:
		line = fmt.Sprintf("%-8s %d connections held, %d verified, %s left of the hold", s.Phase, s.Established, s.Verified, s.ETA.Round(time.Second))
	case s.ETA > 0:
		line += fmt.Sprintf(", ETA %s", s.ETA.Round(time.Second))
	}
	line += ", MemAvailable " + units.Bytes(s.MemAvailable)
	p.lastLine, p.printed = line, false
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	// In a log: a line every 5 s, and one as each phase begins.
	if time.Since(p.last) >= 5*time.Second || s.Phase != p.phase {
		fmt.Fprintln(p.w, line)
		p.last, p.printed = time.Now(), true
	}
	p.phase = s.Phase
}

func (p *progress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	} else if p.lastLine != "" && !p.printed {
		fmt.Fprintln(p.w, p.lastLine)
	}
}
