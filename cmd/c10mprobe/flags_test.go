package main

import "testing"

func TestSysctlValue(t *testing.T) {
	var s sysctlsValue
	if err := s.Set("net.ipv4.tcp_rmem=4096 4096 4096"); err != nil || s[0].Key != "net.ipv4.tcp_rmem" || s[0].Value != "4096 4096 4096" {
		t.Errorf("sysctl: %v %v", s, err)
	}
	for _, bad := range []string{"novalue", "=1", "k="} {
		if err := s.Set(bad); err == nil {
			t.Errorf("sysctl %q accepted", bad)
		}
	}
}
