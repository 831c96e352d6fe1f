package live

import (
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
)

// What BTF prices for a user who cannot read /proc/slabinfo, against
// slabinfo's object sizes read as root: each cache within a cache line,
// and the socket's sum within 3 %.
func TestBTFSizesMatchSlabinfo(t *testing.T) {
	slabs, err := procfs.ReadSlabinfo()
	if err != nil {
		testenv.Skip(t, testenv.NotRoot, "/proc/slabinfo: %v", err)
	}
	sizes := btfSlabSizes()
	if sizes == nil {
		testenv.Skip(t, testenv.KernelLacks, "no BTF in /sys/kernel/btf/vmlinux")
	}
	var btfSum, slabSum int64
	for _, c := range btfCaches {
		s, ok := slabs[c.cache]
		got, priced := sizes[c.cache]
		if !ok || !priced {
			t.Logf("%s: slabinfo %v, BTF %v (merged into another cache, or no such struct)", c.cache, ok, priced)
			continue
		}
		t.Logf("%s: BTF %d B, slabinfo %d B", c.cache, got, s.ObjSize)
		if d := int64(got) - int64(s.ObjSize); d > cacheLine || d < -cacheLine {
			t.Errorf("%s: BTF prices %d B, slabinfo says %d", c.cache, got, s.ObjSize)
		}
		if c.cache != "TCPv6" {
			btfSum, slabSum = btfSum+int64(got), slabSum+int64(s.ObjSize)
		}
	}
	if off := float64(btfSum-slabSum) / float64(slabSum); off > 0.03 || off < -0.03 {
		t.Errorf("a socket's caches: BTF %d B, slabinfo %d B (%+.1f %%)", btfSum, slabSum, 100*off)
	}
}
