package procfs

import (
	"os"
	"slices"
	"testing"
)

func withRoot(t *testing.T) {
	old := Root
	Root = "testdata/proc"
	t.Cleanup(func() { Root = old })
}

func TestReadRecorded(t *testing.T) {
	withRoot(t)
	m, err := ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	if m.MemAvailable != 24108276*1024 || m.SUnreclaim != 69248*1024 || m.Percpu != 8640*1024 {
		t.Errorf("meminfo %+v", m)
	}
	s, err := ReadSlabinfo()
	if err != nil {
		t.Fatal(err)
	}
	if c := s["TCP"]; c.ActiveObjs != 26 || c.ObjSize != 2368 || len(s) != 2 {
		t.Errorf("slabinfo %+v", s)
	}
	// 13 sockets in a slab of 8 pages: 2,520 B of RAM each.
	if c := s["TCP"]; c.PageShare() != 8*uint64(os.Getpagesize())/13 {
		t.Errorf("TCP's share of its slab's pages: %d B (%+v)", c.PageShare(), c)
	}
	l, err := ReadListenCounters()
	if err != nil || l.Overflows != 12 || l.Drops != 15 || l.SoftnetDropped != 0x360+0xa {
		t.Errorf("listen counters %+v %v", l, err)
	}
	st, err := ReadSockstat()
	if err != nil || st.TCPInUse != 2000004 || st.TCPTimeWait != 3 || st.TCPMemPages != 17 || st.TCPAlloc != 2000010 {
		t.Errorf("sockstat %+v %v", st, err)
	}
	pss, err := Pss(42)
	if err != nil || pss != 1234*1024 {
		t.Errorf("pss %d %v", pss, err)
	}
	if b, err := PCPFreeBytes(); err != nil || b != 128*uint64(os.Getpagesize()) {
		t.Errorf("pcp free %d %v", b, err)
	}
	if _, err := Pss(43); err == nil {
		t.Error("Pss of a missing process did not fail")
	}
}

func TestLiveProc(t *testing.T) {
	m, err := ReadMeminfo()
	if err != nil {
		t.Fatal(err)
	}
	if m.MemTotal == 0 || m.MemAvailable == 0 || m.MemAvailable > m.MemTotal {
		t.Errorf("implausible meminfo %+v", m)
	}
	if _, err := ReadListenCounters(); err != nil {
		t.Error(err)
	}
	if _, err := ReadVmstat(); err != nil {
		t.Error(err)
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0-3,6\n": {0, 1, 2, 3, 6}, "0": {0}, "2-2,5-6": {2, 5, 6}} {
		got, err := ParseCPUList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"a", "3-1", "1-x"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if cpus, err := OnlineCPUs(); err != nil || len(cpus) == 0 {
		t.Errorf("online CPUs: %v %v", cpus, err)
	}
}
