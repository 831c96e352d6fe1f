package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFreePageReportingReadsTheBalloonsFeatureBit(t *testing.T) {
	dev := func(root, name, id, features string) {
		d := filepath.Join(root, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "device"), []byte(id+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "features"), []byte(features+"\n"), 0o644)
	}
	on, off, none := t.TempDir(), t.TempDir(), t.TempDir()
	// A network device with bit 5 set is not a balloon.
	dev(on, "virtio0", "0x0001", "11000101")
	dev(on, "virtio1", "0x0005", "01100101000000001")
	dev(off, "virtio0", "0x0005", "01100001000000001")
	dev(none, "virtio0", "0x0001", "11000101")
	for _, c := range []struct{ root, want string }{
		{on, PageReportingOn}, {off, PageReportingOff}, {none, PageReportingOff},
		{filepath.Join(none, "no-such-bus"), PageReportingOff},
	} {
		if got := FreePageReporting(c.root); got != c.want {
			t.Errorf("%s: %s, want %s", c.root, got, c.want)
		}
	}
}

// A reporting pass is a dip in MemFree between reads as they were: the read
// outside it is kept, whichever comes first.
func TestReadMeminfoPastReportingKeepsTheReadOutsideAPass(t *testing.T) {
	dir := t.TempDir()
	zoneinfo, err := os.ReadFile("testdata/proc/zoneinfo")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "zoneinfo"), zoneinfo, 0o644)
	write := func(freeKiB int) {
		// Renamed into place: a read never sees half a file.
		tmp := filepath.Join(dir, "meminfo.new")
		os.WriteFile(tmp, fmt.Appendf(nil, "MemTotal: 4194304 kB\nMemFree: %d kB\nSlab: 1024 kB\n", freeKiB), 0o644)
		if err := os.Rename(tmp, filepath.Join(dir, "meminfo")); err != nil {
			t.Error(err)
		}
	}
	old := Root
	Root = dir
	t.Cleanup(func() { Root = old })

	write(1 << 20) // in a pass
	if m, err := ReadMeminfoPastReporting(0); err != nil || m.MemFree != 1<<30 {
		t.Fatalf("no window: MemFree %d, %v; want the one read", m.MemFree, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(100 * time.Millisecond)
		write(1<<20 + 65536) // the pass over: 64 MiB back
		time.Sleep(100 * time.Millisecond)
		write(1<<20 + 4096) // the next pass
	}()
	m, err := ReadMeminfoPastReporting(400 * time.Millisecond)
	<-done
	if err != nil || m.MemFree != (1<<20+65536)<<10 {
		t.Errorf("MemFree %d, %v; want %d, the read between passes", m.MemFree, err, (1<<20+65536)<<10)
	}
}
