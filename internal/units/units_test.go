package units

import "testing"

func TestFormats(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 28232: "28,232", 1000000: "1,000,000", -1234: "-1,234"} {
		if got := Count(in); got != want {
			t.Errorf("Count(%d) = %q, want %q", in, got, want)
		}
	}
	if got := Count(uint64(18446744073709551615)); got != "18,446,744,073,709,551,615" {
		t.Errorf("Count(max uint64) = %q", got)
	}
	for in, want := range map[uint64]string{512: "512 B", 7424: "7.2 KiB", 1 << 30: "1.0 GiB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[uint64]string{999: "999", 1000: "1,000", 840000: "840k", 2_200_000: "2.2M"} {
		if got := Approx(in); got != want {
			t.Errorf("Approx(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestOff(t *testing.T) {
	if got := Off(110, 100); got != 10 {
		t.Errorf("Off(110, 100) = %v, want 10", got)
	}
	if got := Off(90, 100); got != -10 {
		t.Errorf("Off(90, 100) = %v, want -10", got)
	}
	if got := Off(5, 0); got != 500 {
		t.Errorf("Off(5, 0) = %v, want 500 (a zero prediction counts as 1)", got)
	}
}
