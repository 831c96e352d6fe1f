package procfs

import (
	"os"
	"path/filepath"
	"testing"
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
