package procfs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
)

// What ShrinkableSlab says reclaim frees is what the kernel's shrinkers
// free: with 400,000 negative dentries made for it, the slab
// `echo 2 > /proc/sys/vm/drop_caches` gives back (SReclaimable, meminfo),
// and the dentries' slots it empties in pages that stay (slabinfo: a
// socket's dentry takes one), are within a tenth of it. The host's own
// unused dentries go first: a positive one's inode that has page cache
// stays until its pages are reclaimed, which memory pressure does and
// drop_caches=2 does not (just after a build, 87.5 MiB said where 77.5 MiB
// came back). The dentries and inodes drop_caches frees are the host's
// cache, not its settings: nothing needs restoring.
func TestShrinkableSlabIsWhatTheShrinkersFree(t *testing.T) {
	testenv.NeedRoot(t, "reads /proc/slabinfo and writes vm.drop_caches")
	dropSlab(t)
	dir := t.TempDir()
	for i := range 400000 {
		os.Stat(filepath.Join(dir, "n"+strconv.Itoa(i))) // a lookup that fails leaves a negative dentry
	}
	before, err := ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	slotsBefore := freeDentrySlots(t)
	sizes, err := ReadShrinkSizes()
	if err != nil {
		t.Fatal(err)
	}
	said, err := ShrinkableSlab(sizes)
	if err != nil {
		t.Fatal(err)
	}
	after := dropSlab(t)
	returned := float64(before.SReclaimable) - float64(after.SReclaimable)
	slots := freeDentrySlots(t) - slotsBefore
	freed := returned + slots
	t.Logf("ShrinkableSlab said %.1f MiB; drop_caches gave back %.1f MiB of SReclaimable (%.1f before) and emptied %.1f MiB of dentry slots in pages that stay",
		float64(said)/(1<<20), returned/(1<<20), float64(before.SReclaimable)/(1<<20), slots/(1<<20))
	if said < 400000*64 || float64(said) < 0.9*freed || float64(said) > 1.1*freed {
		t.Errorf("ShrinkableSlab said %d B, and the shrinkers freed %.0f B", said, freed)
	}
}

// dropSlab has the shrinkers free every dentry and inode they can
// (drop_caches=2) and returns meminfo once those frees have landed: they
// are RCU callbacks, so rcu_barrier where the kernel offers it (6.2 on),
// and until SReclaimable stops falling.
func dropSlab(t *testing.T) Meminfo {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	SettleRCU()
	m, err := ReadMeminfo()
	for i := 0; err == nil && i < 25; i++ {
		time.Sleep(200 * time.Millisecond)
		var next Meminfo
		if next, err = ReadMeminfo(); err == nil && next.SReclaimable >= m.SReclaimable {
			break
		}
		m = next
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// freeDentrySlots is the bytes of the dentry cache's slab pages no dentry
// fills (slabinfo: objects less active ones, at the object's size).
func freeDentrySlots(t *testing.T) float64 {
	t.Helper()
	caches, err := ReadSlabinfo()
	if err != nil {
		t.Fatal(err)
	}
	d := caches["dentry"]
	return float64(d.NumObjs-d.ActiveObjs) * float64(d.ObjSize)
}
