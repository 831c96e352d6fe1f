package slabmodel

import (
	"slices"
	"testing"
)

var sizes = map[string]uint64{"TCP": 2368, "sock_inode_cache": 832, "dentry": 192, "filp": 192, "eventpoll_epi": 128,
	"eventpoll_pwq": 64, "lsm_inode_cache": 32, "lsm_file_cache": 24}

func TestMemcgCharge(t *testing.T) {
	got, why := MemcgCharge(sizes)
	// client 3832 + 8 objects × 8, server 1464 + 7 × 8
	want := float64(2368 + 2*(832+192+192+128+64+32+24) + 15*ObjcgPointer)
	if got != want || why == "" {
		t.Errorf("MemcgCharge = %.0f, want %.0f (%s)", got, want, why)
	}
}

func TestKernelBytes(t *testing.T) {
	got, why := KernelBytes(sizes)
	if want := uint64(2 * (2368 + 832 + 192 + 192 + 128 + 64 + 32 + 24)); got != want || why == "" {
		t.Errorf("KernelBytes = %d, want %d (%s)", got, want, why)
	}
	if got, _ := KernelBytes(nil); got != 0 {
		t.Errorf("KernelBytes without sizes = %d", got)
	}
}

// The probes watch every cache the models price, so the ledger can hold
// each priced cache against a count.
func TestWatchedCoversTheModels(t *testing.T) {
	for _, c := range Charged {
		if !slices.Contains(Watched, c) {
			t.Errorf("%s is charged but not watched", c)
		}
	}
	if len(Watched) > 32 { // MAX_CACHES in bpf/c10m.bpf.c
		t.Errorf("%d watched caches, the probes hold 32", len(Watched))
	}
}
