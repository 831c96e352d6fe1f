package host

import "testing"

// The held ports of one sock_diag dump, counted over the range and over the
// runner's slice of it.
func TestHeldPortSetCounts(t *testing.T) {
	h := NewHeldPortSet(100, 199)
	for _, p := range []int{100, 150, 190, 199, 99, 200} { // the last two outside: not counted
		h.Hold(p)
	}
	for _, c := range []struct{ from, to, want int }{{100, 199, 4}, {188, 199, 2}, {0, 120, 1}, {150, 250, 3}, {200, 300, 0}} {
		if got := h.Count(c.from, c.to); got != c.want {
			t.Errorf("count(%d, %d) = %d, want %d", c.from, c.to, got, c.want)
		}
	}
}
