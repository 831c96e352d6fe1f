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
