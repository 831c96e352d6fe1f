package worker

// The server worker: accepting from the shared listener up to its quota,
// then sending each connection its number and verifying the echo.

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

func (w *worker) accept() {
	for w.listening && int(w.stats.Established) < w.cfg.Quota {
		// accept4 through RawSyscall6 (rawsys.go) with a nil address: x/sys/unix.Accept4
		// allocates a Sockaddr per call, which this loop does a million times.
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(w.listener), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default:
			w.fail(resourceFail(e), e, nil)
			w.stopListening()
			return
		}
		fd := int(r)
		if fd >= len(w.conns) {
			rawClose(fd)
			w.fail(FailEMFILE, unix.EMFILE, nil)
			w.stopListening()
			return
		}
		w.conns[fd] = conn{num: w.cfg.Base + uint32(w.stats.Established), state: stOpen}
		events := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET)
		if w.sendLeft != nil {
			events |= unix.EPOLLOUT // a payload larger than the socket takes at once
		}
		if err := w.watch(fd, events); err != 0 {
			rawClose(fd)
			w.conns[fd] = conn{}
			w.fail(resourceFail(err), err, nil)
			w.stopListening()
			return
		}
		w.stats.Opened++
		w.stats.Established++
		w.waiting++
		w.dirty = true
		if w.cfg.Stream {
			// serve: dialers arrive over time; each gets its number now.
			w.exchanging = true
			w.stats.ExchangeDone = 0
			w.sendNumber(fd)
		}
	}
	if int(w.stats.Established) >= w.cfg.Quota {
		w.stopListening()
	}
}

// stopListening takes the shared listener out of this worker's epoll set, so
// that a full worker leaves the accept queue to the others.
func (w *worker) stopListening() {
	if w.listening {
		w.listening = false
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, w.listener, nil)
		w.stats.ConnectDone = 1
		w.dirty = true
	}
}

func (w *worker) exchange() {
	w.exchanging = true
	if w.cfg.Role == Client && w.cfg.Exchange != ExchangeEcho {
		// A client's exchange is driven by the server's messages (or there
		// is none); from now on it reports when every connection is through.
		w.markExchangeDone()
		return
	}
	w.sending, w.sendNext = true, 0
	w.sendBatch()
}

// sendBatch sends the next exchangeBatch numbered messages, then returns
// to the event loop, which calls it again until every connection has had
// its message. All at once, a worker queued its 20,000 messages before any
// peer read one: at 1M connections a million skbs at a time, a gigabyte of
// new slab pages for the exchange (allocate_slab took a tenth of it). In
// batches, the echoes come back and the skbs are freed as it goes, and the
// next batch reuses their memory.
func (w *worker) sendBatch() {
	sent := 0
	for ; w.sendNext < len(w.conns) && sent < exchangeBatch && w.awaiting < w.cfg.Window; w.sendNext++ {
		if w.conns[w.sendNext].state == stOpen {
			w.sendNumber(w.sendNext)
			sent++
		}
	}
	w.sending = w.sendNext < len(w.conns)
	w.markExchangeDone()
}

// exchangeBatch is how many messages a server worker sends between two
// turns of its event loop.
const exchangeBatch = 256

// exchangeWindow is how many messages a worker leaves unanswered at most
// where its Config sets no Window (newWorker resolves it once).
// Each holds an skb in its peer's receive queue, and its echo one here,
// ≈ 1–2 KiB each on loopback; where the peers read slowly (a machine run
// short of memory, its clients' pages reclaimed: 6.1 under TCG,
// 2026-12-06), the batches alone had 90,000 messages a worker queued at
// once, and the exchange took 72 MiB the guard's margin did not hold.
const exchangeWindow = 4096

// sendNumber writes fd's numbered message and starts its payload.
func (w *worker) sendNumber(fd int) {
	c := &w.conns[fd]
	binary.BigEndian.PutUint32(w.buf[:], c.num)
	n, err := rawWrite(fd, w.buf[:])
	if n != 4 {
		errno, _ := err.(unix.Errno)
		w.dropConn(fd, classifyConnErr(errno), errno)
		return
	}
	c.state = stSent
	w.awaiting++
	w.stats.Sent++
	w.startPayload(fd)
}

func (w *worker) serverEvent(fd int, events uint32) {
	c := &w.conns[fd]
	switch c.state {
	case stOpen:
		// Nothing is due before our message: this is the peer closing early.
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			w.receive(fd, c, &c.rx)
			if c.got > 0 && w.conns[fd].state == stOpen {
				w.dropConn(fd, FailMismatch, 0)
			}
		}
	case stSent:
		if events&unix.EPOLLOUT != 0 {
			w.pumpPayload(fd)
		}
		w.receive(fd, c, &c.rx)
		if w.conns[fd].state != stSent || c.got < 4 {
			break
		}
		w.awaiting--
		if c.rx != c.num {
			w.stats.Failed[FailMismatch]++
			c.state = stDone
			w.waiting--
			w.dirty = true
			break
		}
		c.state = stPayload
		if w.readLeft != nil {
			w.readLeft[fd] = uint32(len(w.payload))
		}
		fallthrough
	case stPayload:
		// Verified once the echo matched and the payload went both ways.
		if w.payloadEvent(fd, events) {
			c.state = stDone
			w.stats.Verified++
			w.waiting--
			w.dirty = true
		}
	case stDone:
		w.discard(fd)
		if w.cfg.Stream && events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			// serve: a dialer closed what it held (it went away); the
			// runner names it by a census at the end of the hold.
			rawClose(fd)
			*c = conn{}
			w.stats.PeerClosed++
			w.dirty = true
		}
	}
	w.markExchangeDone()
}

func (w *worker) markExchangeDone() {
	if w.exchanging && w.waiting == 0 && w.stats.ExchangeDone == 0 {
		w.stats.ExchangeDone = 1
		w.dirty = true
		w.report(true)
	}
}
