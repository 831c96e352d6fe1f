package analysis

import "testing"

func TestDistribute(t *testing.T) {
	var v []uint64
	for i := 1; i <= 100; i++ {
		v = append(v, uint64(101-i))
	}
	d := Distribute(v)
	if d.Count != 100 || d.P50 != 50 || d.P90 != 90 || d.P99 != 99 || d.Max != 100 || d.Total != 5050 || d.Mean != 50.5 {
		t.Errorf("got %+v", d)
	}
	if len(d.Log2) != 8 || d.Log2[1] != 1 || d.Log2[7] != 37 { // 1; 64..100
		t.Errorf("log2 histogram %v", d.Log2)
	}
	if d := Distribute(nil); d.Count != 0 || d.Max != 0 {
		t.Errorf("empty: %+v", d)
	}
	if d := Distribute([]uint64{7}); d.P50 != 7 || d.P99 != 7 {
		t.Errorf("one value: %+v", d)
	}
}
