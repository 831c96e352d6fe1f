package ksym

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestLoadAndName(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kallsyms")
	os.WriteFile(p, []byte("ffffffff81000000 T _stext\nffffffff81000100 t tcp_v4_connect\nffffffff81000200 D some_data\nffffffff81000300 T kmem_cache_alloc_noprof\n"), 0o644)
	k, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[uint64]string{0xffffffff81000150: "tcp_v4_connect", 0xffffffff81000300: "kmem_cache_alloc_noprof", 0xffffffff81000250: "tcp_v4_connect", 0x10: "0x10"} {
		if got := k.Name(addr); got != want {
			t.Errorf("Name(%#x) = %s, want %s", addr, got, want)
		}
	}
	os.WriteFile(p, []byte("0000000000000000 T _stext\n"), 0o644)
	if _, err := Load(p); err == nil {
		t.Error("zeroed kallsyms (not root) loaded")
	}
}

// FromGoBinary names this test binary's own functions as the Go runtime
// does (go test strips the ELF symbols; the pclntab stays).
func TestFromGoBinaryAgreesWithTheRuntime(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := FromGoBinary(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []any{TestFromGoBinaryAgreesWithTheRuntime, FromGoBinary, strings.TrimSuffix} {
		pc := reflect.ValueOf(fn).Pointer()
		want := runtime.FuncForPC(pc).Name()
		if got := tab.Name(uint64(pc) + 1); got != want {
			t.Errorf("0x%x: %q, runtime says %q", pc, got, want)
		}
	}
}
