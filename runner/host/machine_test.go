package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
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
