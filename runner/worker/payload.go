package worker

import (
	"golang.org/x/sys/unix"
)

// startPayload begins fd's --payload once its message is through: with
// --unread, one write of what the socket buffer and the peer's window take
// now (the rest is never sent, and that is what such a run measures);
// otherwise all of it is sent and all of the peer's read, and the connection
// counts as through only then.
func (w *worker) startPayload(fd int) {
	if len(w.payload) == 0 {
		return
	}
	if w.sendLeft == nil {
		if n, _ := rawWrite(fd, w.payload); n > 0 {
			w.stats.PayloadSent += uint64(n)
		}
		return
	}
	w.sendLeft[fd] = uint32(len(w.payload))
	w.pumpPayload(fd)
}

// pumpPayload writes what is left of fd's payload until the socket takes no more.
func (w *worker) pumpPayload(fd int) {
	for w.sendLeft != nil && w.sendLeft[fd] > 0 {
		n, err := rawWrite(fd, w.payload[:w.sendLeft[fd]])
		if n <= 0 || err != nil {
			return // EAGAIN: EPOLLOUT (edge-triggered) says when to go on
		}
		w.sendLeft[fd] -= uint32(n)
		w.stats.PayloadSent += uint64(n)
	}
}

// discard reads and drops the peer's payload, unless --unread keeps it
// queued, counting it against what fd has still to read.
func (w *worker) discard(fd int) {
	if len(w.payload) == 0 || w.cfg.Unread {
		return
	}
	for {
		n, err := rawRead(fd, w.payload)
		if n <= 0 || err != nil {
			return
		}
		w.stats.PayloadRead += uint64(n)
		w.readLeft[fd] -= min(w.readLeft[fd], uint32(n))
	}
}

// payloadDone says fd has sent and read all of its payload (at once when
// there is none to wait for).
func (w *worker) payloadDone(fd int) bool {
	return w.sendLeft == nil || w.sendLeft[fd] == 0 && w.readLeft[fd] == 0
}

// payloadEvent moves fd's payload on, and says when it is through.
func (w *worker) payloadEvent(fd int, events uint32) (through bool) {
	if events&unix.EPOLLOUT != 0 {
		w.pumpPayload(fd)
	}
	w.discard(fd)
	return w.payloadDone(fd)
}

// receive reads up to the rest of a 4-byte big-endian number into *into,
// dropping the connection on EOF or error.
func (w *worker) receive(fd int, c *conn, into *uint32) {
	for c.got < 4 {
		n, err := rawRead(fd, w.buf[:4-c.got])
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil:
			errno, _ := err.(unix.Errno)
			w.dropConn(fd, classifyConnErr(errno), errno)
			return
		case n == 0:
			if c.got > 0 {
				w.dropConn(fd, FailShortRead, 0)
			} else {
				w.dropConn(fd, FailEOF, 0)
			}
			return
		}
		for _, b := range w.buf[:n] {
			*into = *into<<8 | uint32(b)
		}
		c.got += uint8(n)
	}
}
