package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// The RAM swap can still give: the swap cache's written pages (their copy is
// in swap already), then as much other anonymous memory as free swap holds.
func TestReclaimableToSwapCountsTheSwapCache(t *testing.T) {
	for _, c := range []struct {
		m    procfs.Meminfo
		want uint64
	}{
		{procfs.Meminfo{SwapCached: 1000, SwapFree: 300, AnonPages: 2500}, 1300},
		{procfs.Meminfo{SwapCached: 1000, SwapFree: 3000, AnonPages: 2500}, 2500},
		{procfs.Meminfo{SwapCached: 0, SwapFree: 3000, AnonPages: 2500, Mlocked: 500}, 2000},
		{procfs.Meminfo{SwapFree: 0, AnonPages: 2500}, 0},
		// 600 of the swap cache still being written: not yet freeable.
		{procfs.Meminfo{SwapCached: 1000, Writeback: 600, SwapFree: 300, AnonPages: 2500}, 700},
	} {
		if got := reclaimableToSwap(c.m); got != c.want {
			t.Errorf("%+v: %d, want %d", c.m, got, c.want)
		}
	}
}

// Free pages on the per-CPU lists are not in use: a host that holds them
// after a big run can still be made into a machine that fits.
func TestMachineCheckCountsPerCPUFreePagesAsFree(t *testing.T) {
	dir := t.TempDir()
	meminfo := "MemTotal: 25165824 kB\nMemFree: 19922944 kB\nMemAvailable: 22020096 kB\nHugetlb: 0 kB\nHugepagesize: 2048 kB\n"
	// 2.5 GiB on one CPU's list.
	zoneinfo := fmt.Sprintf("Node 0, zone   Normal\n  pages free     1000\n  pagesets\n    cpu: 0\n              count: %d\n", (5<<29)/os.Getpagesize())
	for name, data := range map[string]string{"meminfo": meminfo, "zoneinfo": zoneinfo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := procfs.Root
	procfs.Root = dir
	defer func() { procfs.Root = old }()
	// In use: 24 GiB − 21 GiB available − 2.5 GiB on the lists = 0.5 GiB;
	// with a 3 GiB ballast and a 0.5 GiB reserve, 4 GiB fits.
	ma := &Machine{Size: 4 << 30, Ballast: 3 << 30, Reserve: 512 << 20}
	if err := ma.Check(); err != nil && strings.Contains(err.Error(), "in use") {
		t.Errorf("Check: %v; want the per-CPU lists' 2.5 GiB counted free", err)
	}
	ma.Size = 3 << 30
	if err := ma.Check(); err == nil || !strings.Contains(err.Error(), "in use (512.0 MiB)") {
		t.Errorf("Check of a 3 GiB machine: %v; want it refused, 512.0 MiB in use", err)
	}
}

// Once the opening has stopped, the exchange on a smaller machine is cut
// short only when kernel allocations are down to half the margin the
// opening kept: 64 MiB and 1 KiB a held connection, here 100,000 of them.
func TestExchangeGuardTripsAtHalfTheMargin(t *testing.T) {
	page := os.Getpagesize()
	half := (64<<20 + 100000<<10) / 2
	for _, c := range []struct {
		freeAboveMin int // bytes
		trips        bool
	}{
		{half + 8<<20, false},
		{half - 8<<20, true},
	} {
		dir := t.TempDir()
		meminfo := "MemTotal: 2097152 kB\nMemFree: 100000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nAnonPages: 50000 kB\n"
		zoneinfo := fmt.Sprintf("Node 0, zone   Normal\n  pages free     %d\n        min      1000\n        low      1200\n        high     1400\n        protection: (0, 0, 0, 0, 0)\n      nr_zone_inactive_file 0\n      nr_zone_active_file 0\n",
			1000+c.freeAboveMin/page)
		for name, data := range map[string]string{"meminfo": meminfo, "zoneinfo": zoneinfo} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		old := procfs.Root
		procfs.Root = dir
		ma := &Machine{held: 100000}
		kind, detail := ma.ExchangeGuard()
		procfs.Root = old
		if tripped := kind == limit.ReclaimExhausted; tripped != c.trips {
			t.Errorf("%s above the min watermark, half the margin %s: guard %q %q, want tripped %v",
				units.Bytes(uint64(c.freeAboveMin)), units.Bytes(uint64(half)), kind, detail, c.trips)
		}
	}
}

// The smaller machine's pacing: the opening holds once every task stalled
// on memory a fifth of the last second, goes on only a second or more
// into the hold and below 5 %, counts what it held, and gives up on a
// machine that stalls half a minute into a hold.
func TestPacingHoldsWhileTasksStallOnMemory(t *testing.T) {
	var p pacer
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		ms    int
		share float64
		hold  bool
	}{
		{0, 3, false},      // calm
		{100, 19.9, false}, // not yet
		{200, 20, true},    // holds
		{700, 0, true},     // not before a second
		{1300, 6, true},    // still stalling
		{1400, 4.9, false}, // goes on: held 1.2 s
		{1500, 15, false},  // between the two: opening goes on
		{1600, 50, true},   // holds again
	}
	for _, s := range steps {
		p.step(at(s.ms), s.share)
		if p.holding != s.hold {
			t.Fatalf("at %d ms, %.1f %%: holding %v, want %v", s.ms, s.share, p.holding, s.hold)
		}
	}
	if p.holds != 2 {
		t.Errorf("%d holds, want 2", p.holds)
	}
	if got, want := p.heldAt(at(2600)), 2200*time.Millisecond; got != want {
		t.Errorf("held %s at 2.6 s, want %s (1.2 s, then 1 s of the hold still on)", got, want)
	}
	if kind, _ := p.tooLong(at(1600 + 29_000)); kind != "" {
		t.Errorf("29 s into a hold: stopped by %s", kind)
	}
	if kind, detail := p.tooLong(at(1600 + 30_000)); kind != limit.MemoryPressure || !strings.Contains(detail, "held for 30s") {
		t.Errorf("30 s into a hold: %s, %q; want memory_pressure, held for 30s", kind, detail)
	}
}
