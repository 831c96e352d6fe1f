package slabmodel

import (
	"slices"
	"strings"
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
	got, why := KernelBytes(sizes, nil, "TCP")
	if want := uint64(2 * (2368 + 832 + 192 + 192 + 128 + 64 + 32 + 24)); got != want || why == "" {
		t.Errorf("KernelBytes = %d, want %d (%s)", got, want, why)
	}
	// AF_INET6 socks (IPv4-mapped too) come from TCPv6.
	v6 := map[string]uint64{"TCPv6": 2496}
	for k, v := range sizes {
		v6[k] = v
	}
	if got, why := KernelBytes(v6, nil, "TCPv6"); got != uint64(2*(2496+832+192+192+128+64+32+24)) || !strings.Contains(why, "TCPv6 2496") {
		t.Errorf("KernelBytes(TCPv6) = %d (%s)", got, why)
	}
	if got, _ := KernelBytes(nil, nil, "TCP"); got != 0 {
		t.Errorf("KernelBytes without sizes = %d", got)
	}
	// At their slabs' pages where those are known: TCP's 13 in 8 pages,
	// sock_inode_cache's 19 in 4; the rest at their size.
	shares := map[string]uint64{"TCP": 8 * 4096 / 13, "sock_inode_cache": 4 * 4096 / 19}
	if got, why := KernelBytes(sizes, shares, "TCP"); got != uint64(2*(2520+862+192+192+128+64+32+24)) || !strings.Contains(why, "TCP 2520") || !strings.Contains(why, "share of its slab's pages") {
		t.Errorf("KernelBytes at page shares = %d (%s)", got, why)
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
