package serverlog

import (
	"strings"
	"testing"
)

// A JVM's log as a thread-per-connection server writes it when its fds run
// out before its first write: each connection's thread fails with a trace.
const javaLog = `Exception in thread "conn-17" java.lang.ExceptionInInitializerError
	at java.base/sun.nio.ch.NioSocketImpl.write(NioSocketImpl.java:418)
	at java.base/java.net.Socket$SocketOutputStream.write(Socket.java:1120)
	at EchoServer.echo(EchoServer.java:40)
	at java.base/java.lang.Thread.run(Thread.java:840)
Caused by: java.io.IOException: Too many open files
	at java.base/sun.nio.ch.IOUtil.makePipe(Native Method)
	... 4 more
Exception in thread "conn-18" java.lang.NoClassDefFoundError: Could not initialize class sun.nio.ch.FileDispatcherImpl
	at java.base/sun.nio.ch.NioSocketImpl.write(NioSocketImpl.java:418)
	at java.base/java.lang.Thread.run(Thread.java:840)
Exception in thread "conn-19" java.lang.NoClassDefFoundError: Could not initialize class sun.nio.ch.FileDispatcherImpl
	at java.base/java.lang.Thread.run(Thread.java:840)
Exception in thread "conn-1203" java.lang.NoClassDefFoundError: Could not initialize class sun.nio.ch.FileDispatcherImpl
	at java.base/java.lang.Thread.run(Thread.java:840)
server listening on 19972
`

// Python's asyncio, out of fds in accept().
const pythonLog = `socket.accept() out of system resource
socket: <asyncio.TransportSocket fd=6, family=2, type=1, proto=0, laddr=('127.0.0.1', 19973)>
Traceback (most recent call last):
  File "/usr/lib/python3.11/asyncio/selector_events.py", line 165, in _accept_connection
    conn, addr = sock.accept()
OSError: [Errno 24] Too many open files
socket.accept() out of system resource
socket: <asyncio.TransportSocket fd=6, family=2, type=1, proto=0, laddr=('127.0.0.1', 19973)>
Traceback (most recent call last):
  File "/usr/lib/python3.11/asyncio/selector_events.py", line 165, in _accept_connection
OSError: [Errno 24] Too many open files
`

func TestDigestFoldsFramesAndNumbers(t *testing.T) {
	lines, total, err := Scan(strings.NewReader(javaLog), 3)
	if err != nil {
		t.Fatal(err)
	}
	// Four error heads and one cause; frames, "... 4 more" and the
	// listening line are not errors.
	if total != 5 || len(lines) != 3 {
		t.Fatalf("total %d, lines %+v; want 5 error lines in 3 shapes", total, lines)
	}
	if lines[0].Count != 3 || lines[0].Text != `Exception in thread "conn-18" java.lang.NoClassDefFoundError: Could not initialize class sun.nio.ch.FileDispatcherImpl` {
		t.Errorf("commonest %+v; want the NoClassDefFoundError three times, as first written", lines[0])
	}
	if lines[1].Count != 1 || !strings.HasSuffix(lines[1].Text, "ExceptionInInitializerError") || lines[2].Text != "Caused by: java.io.IOException: Too many open files" {
		t.Errorf("then %+v; want the initializer error, then its cause, in the order they came", lines[1:])
	}

	lines, total, err = Scan(strings.NewReader(pythonLog), 5)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(lines) != 1 || lines[0] != (Line{Text: "OSError: [Errno 24] Too many open files", Count: 2}) {
		t.Errorf("python: total %d, %+v; want OSError twice, its traceback and the socket's repr folded", total, lines)
	}
}

func TestDigestClipsLongLines(t *testing.T) {
	long := "error: " + strings.Repeat("x", 500)
	lines, _, err := Scan(strings.NewReader(long+"\n"), 1)
	if err != nil || len(lines) != 1 || len([]rune(lines[0].Text)) != maxText || !strings.HasSuffix(lines[0].Text, "…") {
		t.Fatalf("%v %+v; want one line clipped to %d runes", err, lines, maxText)
	}
}
