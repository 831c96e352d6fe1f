package sockdiag

import (
	"net"
	"testing"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
)

func TestDumpSeesUnreadBytes(t *testing.T) {
	testenv.NeedRoot(t, "SK_MEMINFO of other users' sockets") // sock_diag itself works unprivileged
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 10,000 bytes the server never reads.
	if _, err := c.Write(make([]byte, 10000)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var server, client *Socket
	err = DumpIPv4(1<<StateEstablished, func(x *Socket) {
		cp := *x
		switch {
		case x.Local.Port() == port:
			server = &cp
		case x.Remote.Port() == port:
			client = &cp
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if server == nil || client == nil {
		t.Fatalf("dump missed the connection: server %v client %v", server, client)
	}
	if !server.HasMem || server.RQueue != 10000 || server.Queued() < 10000 || server.Buffered() < server.Queued() {
		t.Errorf("server: rqueue %d, queued %d, buffered %d, meminfo %v", server.RQueue, server.Queued(), server.Buffered(), server.Mem)
	}
	if client.Remote != server.Local || client.Local != server.Remote || client.Inode == 0 {
		t.Errorf("ends do not face each other: client %v→%v, server %v→%v", client.Local, client.Remote, server.Local, server.Remote)
	}
}

// A TIME_WAIT socket is destroyed as ss -K does it.
func TestDestroyFreesATimeWaitSocket(t *testing.T) {
	testenv.NeedRoot(t, "SOCK_DESTROY needs CAP_NET_ADMIN")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	c.Close() // the client closes first: its end goes to TIME_WAIT
	buf := make([]byte, 1)
	s.Read(buf)
	s.Close()
	find := func() (found *Socket) {
		DumpIPv4(1<<StateTimeWait, func(k *Socket) {
			if k.Local == local {
				cp := *k
				found = &cp
			}
		})
		return found
	}
	var tw *Socket
	for i := 0; i < 100 && tw == nil; i++ {
		time.Sleep(10 * time.Millisecond)
		tw = find()
	}
	if tw == nil {
		t.Fatal("no TIME_WAIT socket to destroy")
	}
	if err := Destroy(tw); err != nil {
		t.Fatal(err)
	}
	if find() != nil {
		t.Error("the TIME_WAIT socket is still there")
	}
}
