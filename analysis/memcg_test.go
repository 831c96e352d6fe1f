package analysis

import "testing"

func TestMemcgCharge(t *testing.T) {
	sizes := map[string]uint64{"TCP": 2368, "sock_inode_cache": 832, "dentry": 192, "filp": 192, "eventpoll_epi": 128,
		"eventpoll_pwq": 64, "lsm_inode_cache": 32, "lsm_file_cache": 24}
	got, why := MemcgCharge(sizes)
	// client 3832 + 8 objects × 8, server 1464 + 7 × 8
	want := float64(2368 + 2*(832+192+192+128+64+32+24) + 15*objcgPointer)
	if got != want || why == "" {
		t.Errorf("MemcgCharge = %.0f, want %.0f (%s)", got, want, why)
	}
	if n := PredictMemcg(256<<20, got); n != uint64(float64(256<<20)/want) {
		t.Errorf("PredictMemcg = %d", n)
	}
	if PredictMemcg(1<<30, 0) != 0 || PredictMemcg(-5, got) != 0 {
		t.Error("no cost or no room, no prediction")
	}
}
