package worker

// The client worker: opening connections at the planned rate from the
// plan's source addresses, then echoing the built-in server's numbered
// message, or (--exchange echo, a server the user brings) sending its own
// number and checking the echo as the built-in server does.

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

func (w *worker) open() {
	if w.held {
		return
	}
	if w.cfg.Rate > 0 {
		now := time.Now()
		burst := max(1, w.cfg.Rate/100) // at most 10 ms worth at once
		w.tokens = min(w.tokens+now.Sub(w.lastTick).Seconds()*w.cfg.Rate, burst)
		w.lastTick = now
	}
	quota := w.cfg.Quota
	if w.census {
		quota = w.cfg.Census
	}
	for w.opening && int(w.stats.Opened) < quota && w.pending < w.cfg.Inflight {
		if w.cfg.Rate > 0 {
			if w.tokens < 1 {
				return
			}
			w.tokens--
		}
		w.openOne()
	}
	if int(w.stats.Opened) >= w.cfg.Quota {
		w.opening = false
	}
}

func (w *worker) openOne() {
	if w.cfg.Ports[0] > 0 {
		w.openOnPort()
		return
	}
	src := w.pickSource()
	if src < 0 {
		w.opening = false
		return
	}
	w.connectFrom(src, w.sources[src])
}

// openOnPort opens a connection from the next (source, port) of this
// worker's share (--port-choice runner): bound to it, connect() checks that
// one 4-tuple instead of searching the range for a free port. A port is
// taken on every source before the next port: the kernel's bind bucket of
// a port (tcp_bind_bucket, one a port whatever the address) then comes
// with a fixed share of the connections from the first, and a census of
// the first tenth counts it as the whole run has it. (Source after source,
// the census saw a bucket a connection where the run had one in five:
// eventpoll_epi, which SLUB merges them into, was 13 % off.)
func (w *worker) openOnPort() {
	if w.nextSrc == len(w.sources) {
		w.nextSrc, w.port = 0, w.port+max(1, w.cfg.Stride)
	}
	if w.port > w.cfg.Ports[1] {
		w.fail(FailPorts, unix.EADDRNOTAVAIL, &w.srcAddrs[len(w.srcAddrs)-1])
		w.opening = false
		return
	}
	src := w.nextSrc
	w.nextSrc++
	w.sources[src].setPort(uint16(w.port))
	w.connectFrom(src, w.sources[src])
}

// connectFrom opens one socket bound to sa (port 0: the kernel chooses at
// connect) and connects it to the server.
func (w *worker) connectFrom(src int, sa *rawSockaddr) {
	byRunner := w.cfg.Ports[0] > 0
	fd, err := rawSocket(w.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		errno, _ := err.(unix.Errno)
		w.fail(resourceFail(errno), errno, nil)
		w.opening = false
		return
	}
	if fd >= len(w.conns) {
		// Cannot happen while RLIMIT_NOFILE equals len(conns); guard the index anyway.
		rawClose(fd)
		w.fail(FailEMFILE, unix.EMFILE, nil)
		w.opening = false
		return
	}
	if !byRunner {
		// IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind the address now, pick the
		// port at connect time, so a port is unique per 4-tuple, not per address.
		_ = rawSetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}
	if err := bindSource(fd, sa, byRunner); err != nil {
		rawClose(fd)
		errno, _ := err.(unix.Errno)
		if byRunner && errno == unix.EADDRINUSE {
			// Another program holds this port on this address (or on all
			// of them): the next pair.
			w.stats.PortsSkipped++
			return
		}
		w.fail(FailAddr, errno, &w.srcAddrs[src])
		w.exhaust(src)
		return
	}
	if err := rawConnect(fd, w.server); err != nil && err != unix.EINPROGRESS {
		w.connectFailed(fd, src, err, byRunner)
		return
	}
	w.conns[fd] = conn{state: stConnecting}
	if err := w.watch(fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET); err != 0 {
		// A connect in flight: closing it sends an RST if it completed.
		rawClose(fd)
		w.conns[fd] = conn{}
		w.fail(resourceFail(err), err, nil)
		w.opening = false
		return
	}
	w.stats.Opened++
	w.pending++
	w.dirty = true
}

func (w *worker) pickSource() int {
	for range w.sources {
		i := w.nextSrc
		w.nextSrc = (w.nextSrc + 1) % len(w.sources)
		if !w.exhausted[i] {
			return i
		}
	}
	return -1
}

func (w *worker) exhaust(i int) {
	if !w.exhausted[i] {
		w.exhausted[i] = true
		w.left--
	}
	if w.left == 0 {
		w.opening = false
	}
}

// classifyConnErr classifies a connection's own failure; what is left is a
// resource the kernel could not give (resourceFail).
func classifyConnErr(errno unix.Errno) FailKind {
	switch errno {
	case unix.ETIMEDOUT:
		return FailTimedOut
	case unix.ECONNREFUSED:
		return FailRefused
	case unix.ECONNRESET, unix.EPIPE:
		return FailReset
	case unix.EADDRNOTAVAIL:
		return FailPorts
	}
	return resourceFail(errno)
}

func (w *worker) clientEvent(fd int, events uint32) {
	c := &w.conns[fd]
	if c.state == stConnecting {
		w.pending--
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			soerr, _ := rawGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			w.dropConn(fd, classifyConnErr(unix.Errno(soerr)), unix.Errno(soerr))
			return
		}
		w.stats.Established++
		w.dirty = true
		switch w.cfg.Exchange {
		case ExchangeNone:
			// Held as it is: the parent verifies it with sock_diag. A
			// server that closed it at once did so in this same event
			// (edge-triggered: there is no other), handled below.
			c.state = stDone
		case ExchangeEcho:
			// This end speaks first, as the built-in server does, and
			// checks what comes back.
			*c = conn{num: w.cfg.Base + uint32(w.stats.Established-1), state: stOpen}
			w.waiting++
			w.serverEvent(fd, events)
			return
		}
		c.state = stOpen
		w.waiting++
	}
	if w.cfg.Exchange == ExchangeEcho {
		w.serverEvent(fd, events)
		return
	}
	if c.state == stOpen && events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		w.receive(fd, c, &c.num)
		if c.got == 4 {
			w.stats.Verified++ // received
			binary.BigEndian.PutUint32(w.buf[:], c.num)
			n, err := rawWrite(fd, w.buf[:])
			if n != 4 {
				errno, _ := err.(unix.Errno)
				w.dropConn(fd, FailReset, errno)
				return
			}
			w.stats.Sent++
			w.dirty = true
			c.state = stPayload
			if w.readLeft != nil {
				w.readLeft[fd] = uint32(len(w.payload))
			}
			w.startPayload(fd)
		}
	}
	switch c.state {
	case stPayload:
		if w.payloadEvent(fd, events) {
			c.state = stDone
			w.waiting--
			w.markExchangeDone()
		}
	case stDone:
		w.discard(fd)
		if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			rawClose(fd)
			*c = conn{}
			w.dirty = true
			if w.cfg.PeerCloseFails {
				w.stats.Failed[FailEOF]++ // the server closed what the run held
				return
			}
			// The server closed it after the exchange (serve's close):
			// for a dialer, the end of its hold.
			w.stats.PeerClosed++
		}
	}
}

// bindSource binds fd to its source address: the address alone with the
// kernel picking the port at connect, or the planned port.
func bindSource(fd int, sa *rawSockaddr, byRunner bool) error {
	err := rawBind(fd, sa)
	if byRunner && err == unix.EADDRINUSE {
		// A TIME_WAIT socket may hold this address and port (a killed
		// run's, whose FINs went out at exit): SO_REUSEADDR binds past it,
		// and connect() then takes its 4-tuple over as the kernel's own
		// choice would (tcp_tw_reuse: loopback by default). Only then:
		// every setsockopt is one more syscall a connection.
		_ = rawSetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		err = rawBind(fd, sa)
	}
	return err
}

// connectFailed closes fd, whose connect() failed at once, and counts why.
func (w *worker) connectFailed(fd, src int, err error, byRunner bool) {
	switch err {
	case unix.EADDRNOTAVAIL:
		if byRunner {
			// This 4-tuple is in use (a TIME_WAIT of an earlier run): the
			// next pair.
			rawClose(fd)
			w.stats.PortsSkipped++
			return
		}
		// Every port of ip_local_port_range is taken for this source
		// address: the worker goes on with its others, and only the last
		// of them running out is the ports limit.
		rawClose(fd)
		w.exhaust(src)
		if w.left > 0 {
			w.stats.Failed[FailPorts]++
			w.dirty = true
			return
		}
		w.fail(FailPorts, unix.EADDRNOTAVAIL, &w.srcAddrs[src])
		return
	default:
		rawClose(fd)
		errno, _ := err.(unix.Errno)
		w.fail(classifyConnErr(errno), errno, nil)
		w.stats.Opened++
		return
	}
}
