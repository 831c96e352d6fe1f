package worker

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The worker's state machine, in this process, over real loopback sockets:
// no root, no child processes. The test holds the parent's end of each
// worker's control socket.

type testWorker struct {
	*worker
	parent int // the parent's end of the control socket
}

func newTestWorker(t *testing.T, cfg Config, listener int) *testWorker {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	cfg.Proto, cfg.NoFile = ProtoVersion, lim.Cur
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	w, err := newWorker(cfg, fds[1], listener)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.closeAll()
		unix.Close(w.epfd)
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return &testWorker{worker: w, parent: fds[0]}
}

// Command sends c as the parent does.
func (tw *testWorker) command(t *testing.T, c Command) {
	t.Helper()
	if _, err := unix.Write(tw.parent, []byte{byte(c)}); err != nil {
		t.Fatal(err)
	}
}

// lastReport drains the reports the worker sent and returns the newest.
func (tw *testWorker) lastReport(t *testing.T) (s Stats, ok bool) {
	t.Helper()
	buf := make([]byte, StatsSize+64)
	for {
		n, err := unix.Read(tw.parent, buf)
		if err == unix.EAGAIN {
			return s, ok
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		ok = true
	}
}

// until turns every worker's loop until done holds, or fails after 10 s.
func until(t *testing.T, what string, done func() bool, ws ...*testWorker) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !done(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		for _, w := range ws {
			if exit, err := w.step(1); err != nil || exit {
				t.Fatalf("worker %s stopped: %v", w.cfg.Role, err)
			}
			w.lastReport(t)
		}
	}
}

func listenLoopback(t *testing.T) (fd int, addr string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1024); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

func TestWorkersConnectExchangeVerifyAndClose(t *testing.T) {
	const n = 300
	ln, addr := listenLoopback(t)
	server := newTestWorker(t, Config{Role: Server, Quota: n, Base: 1000}, ln)
	client := newTestWorker(t, Config{Role: Client, Quota: n, Sources: []string{"127.0.0.1"}, Server: addr, Inflight: 64}, -1)

	client.command(t, CmdConnect)
	until(t, "connections", func() bool { return client.stats.ConnectDone == 1 && server.stats.Established == n }, client, server)
	if client.stats.Established != n || client.stats.Opened != n {
		t.Errorf("client opened %d, established %d; want %d", client.stats.Opened, client.stats.Established, n)
	}
	// A full server stops watching the shared listener.
	if server.listening {
		t.Error("the server worker still listens after its quota")
	}

	server.command(t, CmdExchange)
	until(t, "exchange", func() bool { return server.stats.ExchangeDone == 1 }, client, server)
	until(t, "echoes", func() bool { return client.stats.Sent == n }, client, server)
	if server.stats.Sent != n || server.stats.Verified != n || client.stats.Verified != n {
		t.Errorf("server sent %d, verified %d; client received %d; want %d", server.stats.Sent, server.stats.Verified, client.stats.Verified, n)
	}
	for k, v := range server.stats.Failed {
		if v != 0 {
			t.Errorf("server counted %d %s", v, FailKind(k))
		}
	}
	// Each connection carried its own number: Base + the accept order.
	seen := map[uint32]bool{}
	for fd := range server.conns {
		if c := server.conns[fd]; c.state == stDone {
			if c.num < 1000 || c.num >= 1000+n || seen[c.num] {
				t.Fatalf("connection number %d out of place", c.num)
			}
			seen[c.num] = true
		}
	}

	client.command(t, CmdClose)
	server.command(t, CmdClose)
	until(t, "close", func() bool { return client.stats.CloseDone == 1 && server.stats.CloseDone == 1 }, client, server)
	if client.stats.Closed != n || server.stats.Closed != n {
		t.Errorf("closed %d client and %d server sockets, want %d each", client.stats.Closed, server.stats.Closed, n)
	}
	if s, ok := client.lastReport(t); ok && s.Closed != n {
		t.Errorf("the client's last report says %d closed", s.Closed)
	}
}

// A peer that echoes the wrong number is a mismatch, not a verified
// connection; one that closes before the exchange is an EOF.
func TestServerCountsWrongEchoesAndEarlyCloses(t *testing.T) {
	ln, addr := listenLoopback(t)
	server := newTestWorker(t, Config{Role: Server, Quota: 2, Base: 7}, ln)
	var sa unix.SockaddrInet4
	fmt.Sscanf(addr, "127.0.0.1:%d", &sa.Port)
	sa.Addr = [4]byte{127, 0, 0, 1}
	dial := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &sa); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	liar, quitter := dial(), dial()
	defer unix.Close(liar)
	var got [4]byte
	until(t, "accepts", func() bool { return server.stats.Established == 2 }, server)
	server.command(t, CmdExchange)
	until(t, "numbered messages", func() bool { return server.stats.Sent == 2 }, server)
	if _, err := unix.Read(liar, got[:]); err != nil {
		t.Fatal(err)
	}
	if num := binary.BigEndian.Uint32(got[:]); num != 7 && num != 8 {
		t.Errorf("server sent number %d, want 7 or 8", num)
	}
	binary.BigEndian.PutUint32(got[:], 99)
	unix.Write(liar, got[:])
	// Read first: closing with unread data would send an RST (a reset),
	// not a FIN.
	unix.Read(quitter, got[:])
	unix.Close(quitter)
	until(t, "the exchange's end", func() bool { return server.stats.ExchangeDone == 1 }, server)
	if f := server.stats.Failed; f[FailMismatch] != 1 || f[FailEOF] != 1 || server.stats.Verified != 0 {
		t.Errorf("mismatch %d, eof %d, verified %d; want 1, 1, 0", f[FailMismatch], f[FailEOF], server.stats.Verified)
	}
}

// A source address this host does not have fails at bind: the client
// names it, stops opening and reports the connect phase done.
func TestClientStopsOnASourceAddressNotHere(t *testing.T) {
	_, addr := listenLoopback(t)
	// 198.51.100.0/24 is TEST-NET-2: no host has it.
	client := newTestWorker(t, Config{Role: Client, Quota: 10, Sources: []string{"198.51.100.77"}, Server: addr, Inflight: 4}, -1)
	client.command(t, CmdConnect)
	until(t, "the end of opening", func() bool { return client.stats.ConnectDone == 1 }, client)
	if FailKind(client.stats.FirstFail-1) != FailAddr || client.stats.Established != 0 {
		t.Errorf("first failure %s, established %d: want source_address_not_local, 0", FailKind(client.stats.FirstFail-1), client.stats.Established)
	}
	if a := client.stats.FirstFailSrc; a != [4]byte{198, 51, 100, 77} {
		t.Errorf("first failure on %v, want 198.51.100.77", a)
	}
}

// A payload larger than the socket buffers is sent in full and read in full
// both ways before a connection counts as verified; the client says when
// it has read the server's.
func TestPayloadLargerThanTheBuffersGoesBothWaysInFull(t *testing.T) {
	const n, payload = 20, 1 << 20
	ln, addr := listenLoopback(t)
	server := newTestWorker(t, Config{Role: Server, Quota: n, Payload: payload}, ln)
	client := newTestWorker(t, Config{Role: Client, Quota: n, Sources: []string{"127.0.0.1"}, Server: addr, Inflight: n, Payload: payload}, -1)
	client.command(t, CmdConnect)
	until(t, "connections", func() bool { return client.stats.ConnectDone == 1 && server.stats.Established == n }, client, server)
	server.command(t, CmdExchange)
	client.command(t, CmdExchange)
	until(t, "the exchange", func() bool { return server.stats.ExchangeDone == 1 && client.stats.ExchangeDone == 1 }, client, server)
	want := uint64(n * payload)
	if server.stats.Verified != n || server.stats.PayloadSent != want || server.stats.PayloadRead != want ||
		client.stats.PayloadSent != want || client.stats.PayloadRead != want {
		t.Errorf("verified %d; server sent %d read %d, client sent %d read %d; want %d each way",
			server.stats.Verified, server.stats.PayloadSent, server.stats.PayloadRead, client.stats.PayloadSent, client.stats.PayloadRead, want)
	}
	// Cut short, the payload is a failure of its own kind.
	server2 := newTestWorker(t, Config{Role: Server, Quota: 1, Payload: payload}, ln)
	fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fd)
	var sa unix.SockaddrInet4
	fmt.Sscanf(addr, "127.0.0.1:%d", &sa.Port)
	sa.Addr = [4]byte{127, 0, 0, 1}
	if err := unix.Connect(fd, &sa); err != nil {
		t.Fatal(err)
	}
	until(t, "an accept", func() bool { return server2.stats.Established == 1 }, server2)
	server2.command(t, CmdExchange)
	until(t, "the message", func() bool { return server2.stats.Sent == 1 }, server2)
	var num [4]byte
	unix.Read(fd, num[:])
	unix.Write(fd, num[:]) // the echo, and no payload back
	for i := 0; i < 20; i++ {
		server2.step(5)
	}
	server2.finish()
	if server2.stats.Verified != 0 || server2.stats.Failed[FailPayloadShort] != 1 {
		t.Errorf("verified %d, payload_short %d; want 0, 1", server2.stats.Verified, server2.stats.Failed[FailPayloadShort])
	}
}

// CmdAccept has a listening server worker accept what waits in the queue,
// and a worker that stopped listening at its quota ignore it. The parent
// sends it when a server worker stops listening: the shared listener is
// watched with EPOLLEXCLUSIVE, and ep_poll_callback stops at the first
// exclusive epoll with a waiter on its queue: where a woken waiter stays
// queued until epoll_wait returns, later arrivals wake it alone; it stops
// at its quota and what is queued behind it wakes no one. That is our
// reading of Debian's 6.1 in the VM tier, where serve held 49,959 of
// 50,000 with two server workers and nothing more came; it did not happen
// here (6.18), and this test cannot make it happen.
func TestCmdAcceptTakesWhatAFullWorkerLeftQueued(t *testing.T) {
	ln, addr := listenLoopback(t)
	first := newTestWorker(t, Config{Role: Server, Quota: 1, Base: 1}, ln)
	second := newTestWorker(t, Config{Role: Server, Quota: 10, Base: 100}, ln)
	client := newTestWorker(t, Config{Role: Client, Quota: 3, Sources: []string{"127.0.0.1"}, Server: addr, Inflight: 8}, -1)
	client.command(t, CmdConnect)
	until(t, "connections", func() bool { return client.stats.Established == 3 }, client)
	until(t, "the first worker's one", func() bool { return first.stats.Established == 1 && !first.listening }, first)
	// Commands are read before the epoll events: what second holds after
	// the step that reads CmdAccept, it accepted for the command.
	first.command(t, CmdAccept)
	second.command(t, CmdAccept)
	if _, err := first.obey(t); err != nil {
		t.Fatal(err)
	}
	if _, err := second.obey(t); err != nil {
		t.Fatal(err)
	}
	if first.stats.Established != 1 || second.stats.Established != 2 {
		t.Errorf("after CmdAccept the full worker holds %d (want 1), the other %d (want the 2 queued)", first.stats.Established, second.stats.Established)
	}
}

// obey has the worker read and obey one command, as its loop does.
func (tw *testWorker) obey(t *testing.T) (bool, error) {
	t.Helper()
	return tw.worker.command()
}

// A server worker leaves at most its Window of messages unanswered: with
// its client not answering, it sends that many and waits; once answered,
// it sends the rest.
func TestServerKeepsItsWindowOfUnansweredMessages(t *testing.T) {
	const n, window = 100, 8
	ln, addr := listenLoopback(t)
	server := newTestWorker(t, Config{Role: Server, Quota: n, Window: window}, ln)
	client := newTestWorker(t, Config{Role: Client, Quota: n, Sources: []string{"127.0.0.1"}, Server: addr, Inflight: 64}, -1)
	client.command(t, CmdConnect)
	until(t, "connections", func() bool { return client.stats.ConnectDone == 1 && server.stats.Established == n }, client, server)

	server.command(t, CmdExchange)
	for range 50 {
		if _, err := server.step(1); err != nil {
			t.Fatal(err)
		}
	}
	if server.stats.Sent != window {
		t.Errorf("the server sent %d with nothing answered; its window is %d", server.stats.Sent, window)
	}
	until(t, "exchange", func() bool { return server.stats.ExchangeDone == 1 }, client, server)
	if server.stats.Verified != n {
		t.Errorf("verified %d of %d", server.stats.Verified, n)
	}
}

// CmdHold stops a client's opening where it is, without ending it (no
// ConnectDone); CmdRelease goes on to the quota.
func TestClientHoldsItsOpeningUntilReleased(t *testing.T) {
	const n = 400
	ln, addr := listenLoopback(t)
	server := newTestWorker(t, Config{Role: Server, Quota: n, Base: 1}, ln)
	client := newTestWorker(t, Config{Role: Client, Quota: n, Sources: []string{"127.0.0.1"}, Server: addr, Inflight: 8, Rate: 2000}, -1)
	client.command(t, CmdConnect)
	until(t, "the first connections", func() bool { return client.stats.Established >= 50 }, client, server)
	client.command(t, CmdHold)
	until(t, "the hold", func() bool { return client.held && client.pending == 0 }, client, server)
	held := client.stats.Opened
	for range 30 { // 30 loop turns, at 2,000 a second a few ms each: dozens more would open
		if _, err := client.step(1); err != nil {
			t.Fatal(err)
		}
		server.step(1)
	}
	if client.stats.Opened != held || client.stats.ConnectDone != 0 {
		t.Fatalf("held at %d: opened %d, connect done %d; want no more and not done", held, client.stats.Opened, client.stats.ConnectDone)
	}
	client.command(t, CmdRelease)
	until(t, "the rest", func() bool { return client.stats.ConnectDone == 1 && server.stats.Established == n }, client, server)
	if client.stats.Established != n {
		t.Errorf("established %d after the release, want %d", client.stats.Established, n)
	}
}
