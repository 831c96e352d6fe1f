package runner

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// echoServer listens on addr in this process and echoes what each
// connection sends, a goroutine a connection; it returns how many it
// accepted when the test ends.
func echoServer(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	accepted := new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { defer c.Close(); io.CopyBuffer(struct{ io.Writer }{c}, c, make([]byte, 512)) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return accepted
}

// An echo server verifies every connection's number, and with --payload
// the payload too; the server's costs are measured from its process (this
// test binary) idle and at the peak.
func TestRunEchoTarget(t *testing.T) {
	needRoot(t)
	echoServer(t, "127.0.0.1:19923")
	res, err := runIn(t, Config{Conns: 2000, Target: netip.MustParseAddrPort("127.0.0.1:19923"), Exchange: ExchangeEcho,
		Data: Data{Payload: 1000}, Brought: Brought{ServerPIDs: []int{os.Getpid()}}, Reserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified != 2000 || res.Limit != nil || res.Workers.Server != 0 || !res.Server.External {
		t.Errorf("verified %d, limit %+v, %d server workers, external %v; want 2000 verified by the client alone",
			res.Verified, res.Limit, res.Workers.Server, res.Server.External)
	}
	// Each side's 1,000 bytes went out and came back.
	if res.Payload.Sent != 2000*1000 || res.Payload.Read != 2000*1000 {
		t.Errorf("payload sent %d, read %d; want %d each", res.Payload.Sent, res.Payload.Read, 2000*1000)
	}
	if res.ServerSockets != 2000 || res.Server.Peak == nil || res.Server.Peak.FDs < 2000 {
		t.Errorf("%d sockets on the port (sock_diag), server peak %+v; want 2000 and its fds", res.ServerSockets, res.Server.Peak)
	}
}

// --exchange none verifies with sock_diag: every connection the server
// accepted is held at both ends.
func TestRunNoneTarget(t *testing.T) {
	needRoot(t)
	accepted := echoServer(t, "127.0.0.1:19924")
	res, err := runIn(t, Config{Conns: 1500, Target: netip.MustParseAddrPort("127.0.0.1:19924"), Reserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Server.Exchange != string(ExchangeNone) || res.Verified != 1500 || res.Limit != nil {
		t.Errorf("exchange %s, verified %d, limit %+v; want none (the --target default) and 1500", res.Server.Exchange, res.Verified, res.Limit)
	}
	if n := accepted.Load(); n != 1500 {
		t.Errorf("the server accepted %d, want 1500", n)
	}
}

func TestValidateTarget(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Target: netip.MustParseAddrPort("[::1]:80")}, "IPv4 address:port"},
		{Config{Target: netip.MustParseAddrPort("0.0.0.0:80")}, "the address the server listens on"},
		{Config{Target: netip.MustParseAddrPort("198.51.100.7:80"), Brought: Brought{ServerCmd: "x"}}, "not an address of this host"},
		{Config{Target: netip.MustParseAddrPort("127.0.0.1:19925")}, "nothing listens there"},
		{Config{Target: netip.MustParseAddrPort("127.0.0.1:19925"), Brought: Brought{ServerPIDs: []int{-3}}}, "process id"},
		{Config{Target: netip.MustParseAddrPort("127.0.0.1:19925"), Exchange: ExchangeNumbered, Brought: Brought{ServerCmd: "x"}}, "built-in server's protocol"},
		{Config{Exchange: ExchangeNone}, "a server you bring"},
		{Config{Brought: Brought{ServerPIDs: []int{1}}}, "give --target"},
	} {
		err := validateTarget(tc.cfg)
		if err == nil || !IsBadInput(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want bad input with %q", tc.cfg, err, tc.want)
		}
	}
}
