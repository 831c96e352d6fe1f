package analysis

import (
	"strings"
	"testing"
)

// A myth is told only where the run's numbers refute it.
func TestMythsOnlyWhereTheRunRefutesThem(t *testing.T) {
	claims := func(r Run) string {
		var b strings.Builder
		for _, m := range myths(r, Explanation{}) {
			b.WriteString(m.Claim + "\n")
		}
		return b.String()
	}
	r := loadInput(t, "memory") // 20,000 connections, 12,107 sockets in a worker of 20,000 fds
	got := claims(r)
	if strings.Contains(got, "65,536") {
		t.Errorf("20,000 connections on the port: the 65,536 myth is told\n%s", got)
	}
	// 12,107 sockets in 20,000 fds: two fds a socket would have stopped at 10,000.
	if !strings.Contains(got, "two file descriptors") || !strings.Contains(got, "tcp_rmem + tcp_wmem") || !strings.Contains(got, `"used"`) {
		t.Errorf("fds, buffers and free's used are refuted by this run, yet:\n%s", got)
	}
	r.MaxHeldPerFDs = 9000
	if got := claims(r); strings.Contains(got, "two file descriptors") {
		t.Errorf("9,000 sockets in 20,000 fds refute nothing, yet:\n%s", got)
	}
	r.SocketsOnPort, r.MaxHeldPerFDs = 70000, 15000
	if got := claims(r); !strings.Contains(got, "65,536") || !strings.Contains(got, "two file descriptors") {
		t.Errorf("70,000 on the port, 15,000 sockets in 20,000 fds: not told\n%s", got)
	}
	// tcp_rmem 4096 4096 4096: the buffers held more than the defaults' sum.
	r.Limits.RmemDefault, r.Limits.WmemDefault = 4096, 16384
	r.SocketBuffers = 2 * r.Connections * (4096 + 16384)
	if got := claims(r); strings.Contains(got, "tcp_rmem + tcp_wmem") {
		t.Errorf("buffers above the defaults' sum, yet the myth is told\n%s", got)
	}
}
