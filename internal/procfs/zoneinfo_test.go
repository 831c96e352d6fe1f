package procfs

import (
	"os"
	"path/filepath"
	"testing"
)

// A small machine's zones as huge pages leave them: DMA32 free behind its
// reserve against ZONE_NORMAL, Normal nearly full. What kernel allocations
// can still get counts Normal's free above min and its file pages, and
// DMA32's free only above its reserve.
func TestKernelAvailableCountsWhatNormalAllocationsReach(t *testing.T) {
	dir := t.TempDir()
	zi := `Node 0, zone    DMA32
  pages free     20000
        min      2000
        low      2500
        high     3000
        protection: (0, 0, 21071, 21071, 21071)
      nr_zone_inactive_file 0
      nr_zone_active_file 0
Node 0, zone   Normal
  pages free     60000
        min      50000
        low      55000
        high     60000
        protection: (0, 0, 0, 0, 0)
      nr_zone_inactive_file 3000
      nr_zone_active_file 1000
`
	if err := os.WriteFile(filepath.Join(dir, "zoneinfo"), []byte(zi), 0o644); err != nil {
		t.Fatal(err)
	}
	old := Root
	Root = dir
	defer func() { Root = old }()
	page := uint64(os.Getpagesize())
	// DMA32: 20,000 free < 2,000 + 21,071: nothing. Normal: 60,000 − 50,000 + 4,000.
	if got, err := KernelAvailable(); err != nil || got != 14000*page {
		t.Errorf("KernelAvailable %d (%v), want %d", got, err, 14000*page)
	}
	// Above low instead of min, without the file pages: 60,000 − 55,000.
	if got, err := KernelHeadroom(); err != nil || got != 5000*page {
		t.Errorf("KernelHeadroom %d (%v), want %d", got, err, 5000*page)
	}
}

// Free pages on a zone's per-CPU lists are not in its "pages free": what
// kernel allocations can still get counts what each list holds above its
// floor (high_min, from 6.7), which reclaim returns; what they take before
// kswapd wakes (the watermarks see NR_FREE_PAGES alone) does not. Lists
// without high_min (before 6.7) count nothing.
func TestKernelAvailableCountsPerCPUFreePages(t *testing.T) {
	page := uint64(os.Getpagesize())
	for _, c := range []struct {
		name, lists string
		want        uint64
	}{
		{"6.7 and later", `    cpu: 0
              count: 30000
              high:  48303
              high_min: 1444
              high_max: 48303
              batch: 63
    cpu: 1
              count: 1000
              high:  1444
              high_min: 1444
              high_max: 48303
              batch: 63
`, 2000 + 30000 - 1444},
		{"before 6.7", `    cpu: 0
              count: 30000
              high:  48303
              batch: 63
`, 2000},
	} {
		dir := t.TempDir()
		zi := "Node 0, zone   Normal\n  pages free     52000\n        min      50000\n        low      55000\n        high     60000\n        protection: (0, 0, 0, 0, 0)\n  pagesets\n" + c.lists
		if err := os.WriteFile(filepath.Join(dir, "zoneinfo"), []byte(zi), 0o644); err != nil {
			t.Fatal(err)
		}
		old := Root
		Root = dir
		if got, err := KernelAvailable(); err != nil || got != c.want*page {
			t.Errorf("%s: KernelAvailable %d (%v), want %d", c.name, got, err, c.want*page)
		}
		if got, err := KernelHeadroom(); err != nil || got != 0 {
			t.Errorf("%s: KernelHeadroom %d (%v), want 0: free is below low without the lists", c.name, got, err)
		}
		Root = old
	}
}

// Swap holds pages out of RAM less the swap cache, whose pages are in both.
func TestSwappedOutLeavesTheSwapCacheOut(t *testing.T) {
	m := Meminfo{SwapTotal: 2 << 30, SwapFree: 176 << 20, SwapCached: 1025 << 20}
	if got, want := m.SwappedOut(), uint64(2<<30-176<<20-1025<<20); got != want {
		t.Errorf("SwappedOut %d, want %d", got, want)
	}
	// Pages of the swap cache still being written are on their way out.
	m.Writeback = 25 << 20
	if got, want := m.SwappedOut(), uint64(2<<30-176<<20-1000<<20); got != want {
		t.Errorf("SwappedOut with 25 MiB being written %d, want %d", got, want)
	}
	if got := (Meminfo{SwapTotal: 1 << 30, SwapFree: 1 << 30, SwapCached: 4096}).SwappedOut(); got != 0 {
		t.Errorf("SwappedOut with a stray swap-cache page and nothing used: %d, want 0", got)
	}
}
