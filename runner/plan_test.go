package runner

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMakePlan(t *testing.T) {
	for _, tc := range []struct {
		name                string
		in                  PlanInput
		workers, sources    int
		perWorker, portsPer int
		by                  string
	}{
		{"one process", PlanInput{Conns: 1000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 1, 1, 19984, 28232, "fds"},
		{"past one fd budget", PlanInput{Conns: 30000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 2, 3, 19984, 28232, "fds"},
		{"a million", PlanInput{Conns: 1000000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 51, 71, 19984, 28232, "fds"},
		{"capped workers", PlanInput{Conns: 5000, NoFile: 100, MaxWorkers: 2, PortLo: 32768, PortHi: 60999}, 2, 1, 84, 28232, "max_workers"},
		// Ordinary root raises RLIMIT_NOFILE to fs.nr_open: one worker
		// would hold a side; the share bounds each worker instead.
		{"raised hard limit", PlanInput{Conns: 1000000, NoFile: 1048576, PortLo: 32768, PortHi: 60999}, 10, 71, 1048560, 28232, "share"},
		{"64 CPUs, raised limit", PlanInput{Conns: 100000, NoFile: 1048576, CPUs: 64, PortLo: 32768, PortHi: 60999}, 64, 8, 1048560, 28232, "cpus"},
		{"64 CPUs, a million", PlanInput{Conns: 1000000, NoFile: 1048576, CPUs: 64, PortLo: 32768, PortHi: 60999}, 64, 71, 1048560, 28232, "cpus"},
		{"64 CPUs, 30 connections", PlanInput{Conns: 30, NoFile: 1048576, CPUs: 64, PortLo: 32768, PortHi: 60999}, 30, 1, 1048560, 28232, "cpus"},
		{"64 CPUs, --max-workers 4", PlanInput{Conns: 100000, NoFile: 1048576, CPUs: 64, MaxWorkers: 4, PortLo: 32768, PortHi: 60999}, 4, 8, 1048560, 28232, "max_workers"},
		{"one CPU (taskset -c 0)", PlanInput{Conns: 100000, NoFile: 1048576, CPUs: 1, PortLo: 32768, PortHi: 60999}, 1, 8, 1048560, 28232, "fds"},
		// A 256 MiB cap at 8 KiB a connection holds < 33k: the workers
		// are sized for capSlack × that, not for the 200k asked.
		{"memory cap", PlanInput{Conns: 200000, NoFile: 14000, CapConns: capConns(256<<20, 8192), PortLo: 32768, PortHi: 60999}, 4, 15, 13984, 28232, "mem_limit"},
		{"memory cap above --conns", PlanInput{Conns: 20000, NoFile: 14000, CapConns: capConns(4<<30, 8192), PortLo: 32768, PortHi: 60999}, 2, 2, 13984, 28232, "fds"},
		{"given sources", PlanInput{Conns: 5000, NoFile: 20000, PortLo: 40000, PortHi: 40999,
			Sources: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}, 1, 1, 19984, 1000, "fds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.ClientWorkers != tc.workers || p.ServerWorkers != tc.workers || len(p.Sources) != tc.sources ||
				p.ConnsPerWorker != tc.perWorker || p.PortsPerSource != tc.portsPer || p.WorkersBy != tc.by {
				t.Errorf("plan %+v with %d sources; want %d workers by %s, %d sources, %d per worker, %d ports",
					p, len(p.Sources), tc.workers, tc.by, tc.sources, tc.perWorker, tc.portsPer)
			}
			total := 0
			for i := range p.ClientWorkers {
				total += Quota(tc.in.Conns, p.ClientWorkers, i)
			}
			if total != tc.in.Conns {
				t.Errorf("quotas sum to %d, want %d", total, tc.in.Conns)
			}
		})
	}
}

func TestAutoSourcesSkipNetworkAndBroadcastOctets(t *testing.T) {
	got, err := autoSources(300)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].String() != "127.1.0.1" || got[253].String() != "127.1.0.254" || got[254].String() != "127.1.1.1" {
		t.Errorf("sources start %s … %s, %s", got[0], got[253], got[254])
	}
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if seen[a] || strings.HasSuffix(a.String(), ".0") || strings.HasSuffix(a.String(), ".255") {
			t.Errorf("bad or repeated source %s", a)
		}
		seen[a] = true
	}
}

func TestMakePlanRejects(t *testing.T) {
	if _, err := MakePlan(PlanInput{Conns: 10, NoFile: 16, PortLo: 1, PortHi: 2}); err == nil {
		t.Error("accepted an fd budget that leaves no room for sockets")
	}
	if _, err := MakePlan(PlanInput{Conns: 10, NoFile: 100, PortLo: 5, PortHi: 4}); err == nil {
		t.Error("accepted an empty port range")
	}
}
