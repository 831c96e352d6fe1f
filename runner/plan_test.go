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
	}{
		{"one process", PlanInput{Conns: 1000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 1, 1, 19984, 28232},
		{"past one fd budget", PlanInput{Conns: 30000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 2, 3, 19984, 28232},
		{"a million", PlanInput{Conns: 1000000, NoFile: 20000, PortLo: 32768, PortHi: 60999}, 51, 71, 19984, 28232},
		{"capped workers", PlanInput{Conns: 5000, NoFile: 100, MaxWorkers: 2, PortLo: 32768, PortHi: 60999}, 2, 1, 84, 28232},
		{"raised hard limit", PlanInput{Conns: 1000000, NoFile: 1048576, PortLo: 32768, PortHi: 60999}, 1, 71, 1048560, 28232},
		{"given sources", PlanInput{Conns: 5000, NoFile: 20000, PortLo: 40000, PortHi: 40999,
			Sources: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}, 1, 1, 19984, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.ClientWorkers != tc.workers || p.ServerWorkers != tc.workers || len(p.Sources) != tc.sources ||
				p.ConnsPerWorker != tc.perWorker || p.PortsPerSource != tc.portsPer {
				t.Errorf("plan %+v with %d sources; want %d workers, %d sources, %d per worker, %d ports",
					p, len(p.Sources), tc.workers, tc.sources, tc.perWorker, tc.portsPer)
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
