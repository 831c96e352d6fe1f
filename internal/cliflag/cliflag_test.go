package cliflag

import (
	"net/netip"
	"testing"
)

func TestCountValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"100000", 100000, true}, {"1_000_000", 1000000, true}, {"1,000,000", 1000000, true}, {"1e6", 1000000, true},
		{"0", 0, false}, {"-5", 0, false}, {"abc", 0, false}, {"1.5", 0, false}, {"", 0, false}, {"99999999999", 0, false},
		{"1,0,0", 0, false}, {"10,00", 0, false}, {"1__000", 0, false}, {"12_345", 12345, true},
	} {
		var c Count
		err := c.Set(tc.in)
		if (err == nil) != tc.ok || (tc.ok && int(c) != tc.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, ok=%v", tc.in, c, err, tc.want, tc.ok)
		}
	}
}

func TestSizeValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"8GiB", 8 << 30, true}, {"512MiB", 512 << 20, true}, {"1.5G", 3 << 29, true}, {"4096", 4096, true},
		{"1GB", 1e9, true}, {"16KiB", 16 << 10, true}, {"8 GiB", 8 << 30, true},
		{"8XB", 0, false}, {"GiB", 0, false}, {"-1G", 0, false},
		{"9000000TiB", 0, false}, {"1e30", 0, false}, {"0.5", 0, false}, {"0", 0, true},
	} {
		var s Size
		err := s.Set(tc.in)
		if (err == nil) != tc.ok || (tc.ok && uint64(s) != tc.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, ok=%v", tc.in, uint64(s), err, tc.want, tc.ok)
		}
	}
}

func TestSourcesValue(t *testing.T) {
	var s Sources
	if err := s.Set("127.0.1.0/30,127.0.2.7"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("127.0.3.1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.1.0", "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.2.7", "127.0.3.1"}
	if len(s) != len(want) {
		t.Fatalf("got %v, want %v", s, want)
	}
	for i, a := range want {
		if s[i] != netip.MustParseAddr(a) {
			t.Errorf("address %d = %s, want %s", i, s[i], a)
		}
	}
	for _, bad := range []string{"300.1.1.1", "::1", "127.0.0.0/4", "127.0.0.1/33", "x"} {
		var s Sources
		if err := s.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestPortRangeAndListen(t *testing.T) {
	var p PortRange
	if err := p.Set("40000-40999"); err != nil || p != [2]int{40000, 40999} {
		t.Errorf("port range: %v %v", p, err)
	}
	for _, bad := range []string{"5-2", "0-10", "1-70000", "abc", "100"} {
		if err := p.Set(bad); err == nil {
			t.Errorf("port range %q accepted", bad)
		}
	}
	var l AddrPort
	for _, bad := range []string{"127.0.0.1", "localhost:80", "[::1]:80", "127.0.0.1:0"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("listen %q accepted", bad)
		}
	}
}

func TestSysctlValue(t *testing.T) {
	var s Sysctls
	if err := s.Set("net.ipv4.tcp_rmem=4096 4096 4096"); err != nil || s[0].Key != "net.ipv4.tcp_rmem" || s[0].Value != "4096 4096 4096" {
		t.Errorf("sysctl: %v %v", s, err)
	}
	for _, bad := range []string{"novalue", "=1", "k="} {
		if err := s.Set(bad); err == nil {
			t.Errorf("sysctl %q accepted", bad)
		}
	}
}
