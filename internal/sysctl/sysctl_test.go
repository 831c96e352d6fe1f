package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

func fakeDir(t *testing.T, values map[string]string) {
	old := Dir
	Dir = t.TempDir()
	t.Cleanup(func() { Dir = old })
	for k, v := range values {
		p := Path(k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestJournalSetsAndRestores(t *testing.T) {
	fakeDir(t, map[string]string{"net.core.somaxconn": "4096\n", "net.ipv4.ip_local_port_range": "32768\t60999\n"})
	jpath := filepath.Join(t.TempDir(), "journal.json")
	j := NewJournal(jpath)
	if _, err := j.Set("net.core.somaxconn", "65535"); err != nil {
		t.Fatal(err)
	}
	if c, err := j.Set("net.ipv4.ip_local_port_range", "40000  40999"); err != nil || c.Old != "32768 60999" || c.New != "40000 40999" {
		t.Fatalf("set range: %+v %v", c, err)
	}
	if c, _ := j.Set("net.core.somaxconn", "65535"); !c.Restored {
		t.Error("setting an unchanged value was journaled")
	}
	if v, _ := Read("net.core.somaxconn"); v != "65535" {
		t.Errorf("somaxconn = %q after Set", v)
	}
	// A second process (c10mprobe restore) works from the file alone.
	loaded, err := LoadJournal(jpath)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Changes()) != 2 {
		t.Fatalf("journal on disk has %d changes, want 2", len(loaded.Changes()))
	}
	if err := loaded.Restore(); err != nil {
		t.Fatal(err)
	}
	if v, _ := Read("net.core.somaxconn"); v != "4096" {
		t.Errorf("somaxconn = %q after restore", v)
	}
	if v, _ := Read("net.ipv4.ip_local_port_range"); v != "32768 60999" {
		t.Errorf("port range = %q after restore", v)
	}
	for _, c := range loaded.Changes() {
		if !c.Restored {
			t.Errorf("%s not marked restored", c.Key)
		}
	}
}

func TestCheck(t *testing.T) {
	fakeDir(t, map[string]string{"net.ipv4.tcp_rmem": "4096 131072 6291456\n"})
	if err := Check("net.ipv4.tcp_rmem"); err != nil {
		t.Errorf("writable key rejected: %v", err)
	}
	for _, bad := range []string{"net.ipv4.no_such_key", "", "../etc/passwd", "net/ipv4", "net.ipv4"} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%q) passed", bad)
		}
	}
	os.Chmod(Path("net.ipv4.tcp_rmem"), 0o444)
	if err := Check("net.ipv4.tcp_rmem"); err == nil {
		t.Error("read-only key accepted")
	}
}

// A value changed by hand since the run set it is someone's: restore leaves
// it, and says so, instead of writing the run's old value over it.
func TestRestoreLeavesAValueChangedSince(t *testing.T) {
	fakeDir(t, map[string]string{"net.core.somaxconn": "4096\n", "net.ipv4.tcp_rmem": "4096 131072 6291456\n"})
	j := NewJournal(filepath.Join(t.TempDir(), "journal.json"))
	j.Set("net.core.somaxconn", "65535")
	j.Set("net.ipv4.tcp_rmem", "4096 4096 4096")
	if err := write("net.core.somaxconn", "8192"); err != nil { // by hand, during the run
		t.Fatal(err)
	}
	if err := j.Restore(); err != nil {
		t.Fatal(err)
	}
	if v, _ := Read("net.core.somaxconn"); v != "8192" {
		t.Errorf("somaxconn %q, want the hand-set 8192 left", v)
	}
	if v, _ := Read("net.ipv4.tcp_rmem"); v != "4096 131072 6291456" {
		t.Errorf("tcp_rmem %q, want it restored", v)
	}
	for _, c := range j.Changes() {
		if want := map[string]string{"net.core.somaxconn": "8192"}[c.Key]; c.LeftAlone != want || !c.Restored {
			t.Errorf("%s: left alone %q, restored %v", c.Key, c.LeftAlone, c.Restored)
		}
	}
}

// RestoreKey gives back one key ahead of the rest (huge pages before a
// swapfile goes off); Restore then does the others, and the first once.
func TestRestoreKeyFirst(t *testing.T) {
	fakeDir(t, map[string]string{"vm.nr_hugepages": "0\n", "net.core.somaxconn": "4096\n"})
	j := NewJournal(filepath.Join(t.TempDir(), "journal.json"))
	j.Set("vm.nr_hugepages", "512")
	j.Set("net.core.somaxconn", "65535")
	if err := j.RestoreKey("vm.nr_hugepages"); err != nil {
		t.Fatal(err)
	}
	if v, _ := Read("vm.nr_hugepages"); v != "0" {
		t.Errorf("nr_hugepages %q after RestoreKey, want 0", v)
	}
	if v, _ := Read("net.core.somaxconn"); v != "65535" {
		t.Errorf("somaxconn %q after RestoreKey of another key, want it left", v)
	}
	write("vm.nr_hugepages", "7") // someone's, after the run gave it back
	if err := j.Restore(); err != nil {
		t.Fatal(err)
	}
	if v, _ := Read("net.core.somaxconn"); v != "4096" {
		t.Errorf("somaxconn %q after Restore, want 4096", v)
	}
	if v, _ := Read("vm.nr_hugepages"); v != "7" {
		t.Errorf("nr_hugepages %q: Restore wrote a key already given back", v)
	}
}
