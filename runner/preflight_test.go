package runner

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/runner/worker"
	"golang.org/x/sys/unix"
)

func TestPreflight(t *testing.T) {
	h := Host{NoFileSoft: 20000, NoFileHard: 20000, NrOpen: 1048576, FileMax: 2466183, FilesOpen: 1000,
		PortLo: 32768, PortHi: 60999, Somaxconn: 4096, SynBacklog: 2048,
		SlabObjSize: map[string]uint64{"TCP": 2368, "sock_inode_cache": 832, "dentry": 192, "filp": 192, "eventpoll_epi": 128}}
	h.Mem.MemAvailable = 23 << 30
	p, _ := MakePlan(PlanInput{Conns: 1000000, NoFile: 20000, PortLo: 32768, PortHi: 60999})
	checks := Preflight(h, p, Tuning{Backlog: 65535, PortLo: 32768, PortHi: 60999}, 1<<30, false)
	byName := map[string]Check{}
	for _, c := range checks {
		byName[c.Limit] = c
	}
	if c := byName["fds per process"]; !c.OK || !strings.Contains(c.Action, "51 client + 51 server") {
		t.Errorf("fds: %+v", c)
	}
	// Under a memory cap the workers cover what the cap can hold, not
	// --conns: that is no fd limit.
	capped, _ := MakePlan(PlanInput{Conns: 1000000, NoFile: 20000, PortLo: 32768, PortHi: 60999, CapConns: 50000})
	if c := fdCheck(h, capped); !c.OK || !strings.Contains(c.Action, "3 client + 3 server") || !strings.Contains(c.Action, "memory cap holds at most ≈ 50,000") {
		t.Errorf("fds under a cap: %+v", c)
	}
	if c := byName["accept backlog"]; c.OK || !strings.Contains(c.Action, "65535") {
		t.Errorf("backlog: %+v", c)
	}
	if c := byName["memory"]; !c.OK || !strings.Contains(c.Needs, "7.2 KiB per connection") || !strings.Contains(c.Note, "TCP 2368") {
		t.Errorf("memory: %+v", c)
	}
	if _, ok := byName["conntrack"]; ok {
		t.Error("conntrack listed though nf_conntrack is not loaded")
	}
	if _, ok := byName["input backlog"]; ok {
		t.Error("input backlog listed though netdev_max_backlog was not read")
	}

	// The CPUs' input queues: raised by root, left by anyone else.
	h.InputBacklog = 1000
	for _, root := range []bool{true, false} {
		h.Root = root
		want := "raise to 2,000,000 for the run"
		if !root {
			want = "left as is (--no-tune, or not root)"
		}
		for _, c := range Preflight(h, p, Tuning{Backlog: 65535, InputBacklog: 2000000, PortLo: 32768, PortHi: 60999}, 1<<30, false) {
			if c.Limit == "input backlog" && (c.OK || !strings.HasPrefix(c.Action, want) || !strings.Contains(c.Value, "1,000 packets a CPU")) {
				t.Errorf("input backlog as root %v: %+v", root, c)
			}
		}
	}
	h.InputBacklog, h.Root = 0, false

	// 4 GiB available holds about 4 GiB / 7,424 B ≈ 578,524 connections.
	h.Mem.MemAvailable = 5 << 30
	checks = Preflight(h, p, Tuning{Backlog: 65535, PortLo: 32768, PortHi: 60999}, 1<<30, false)
	for _, c := range checks {
		if c.Limit == "memory" && (c.OK || !strings.Contains(c.Action, "578,524")) {
			t.Errorf("memory with 5 GiB: %+v", c)
		}
	}

	one := []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	p, _ = MakePlan(PlanInput{Conns: 3000, NoFile: 20000, Sources: one, PortLo: 40000, PortHi: 40999})
	for _, c := range Preflight(h, p, Tuning{Backlog: 65535, PortLo: 40000, PortHi: 40999}, 1<<30, false) {
		if c.Limit == "source ports" && (c.OK || !strings.Contains(c.Action, "binds at 1,000")) {
			t.Errorf("ports: %+v", c)
		}
	}
}

// Every kind of failure names a limit kind: one added without an entry in
// failureKinds would name none.
func TestEveryFailureNamesALimitKind(t *testing.T) {
	for k := worker.FailKind(0); k < worker.NumFailKinds; k++ {
		if failureKinds[k] == "" {
			t.Errorf("failure %s names no limit kind", k)
		}
	}
}

// Host.CPUs is the affinity mask the process runs under: the Go runtime's
// count (runtime.NumCPU reads the same mask at its start), and one on a
// thread held to CPU 0, as under taskset -c 0.
func TestReadHostCountsTheAffinityMask(t *testing.T) {
	h, err := ReadHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.CPUs != runtime.NumCPU() {
		t.Errorf("host cpus %d, the Go runtime counts %d", h.CPUs, runtime.NumCPU())
	}
	runtime.LockOSThread() // the thread ends with the test: its mask goes with it
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	if h, err := ReadHost(); err != nil || h.CPUs != 1 {
		t.Errorf("held to CPU 0: host cpus %d (%v), want 1", h.CPUs, err)
	}
}
