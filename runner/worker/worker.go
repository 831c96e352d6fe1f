package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arg is argv[1] of a re-executed worker process.
const Arg = "__c10mprobe_worker"

// Connection states. A worker keeps one conn per file descriptor number, in a
// slice indexed by fd: no heap object per connection and nothing for the GC
// to scan, since conn holds no pointers.
const (
	stFree uint8 = iota
	stConnecting
	stOpen    // client: connected; server: accepted
	stSent    // server: numbered message written
	stPayload // the message is through; --payload still being sent or read
	stDone    // client: echoed; server: echo verified (and the payload through)
)

type conn struct {
	num   uint32 // server: the number sent; client: the number being received
	rx    uint32 // server: the echo being received
	got   uint8  // bytes of num (client) or rx (server) received so far
	state uint8
}

type worker struct {
	cfg      Config
	ctl      int // the control socket (ctlFD in a worker process)
	listener int // the shared listener (listenerFD in a server worker process)
	epfd     int
	conns    []conn
	events   []unix.EpollEvent
	ev       unix.EpollEvent // reused by epoll_ctl so that it does not escape per call
	buf      [4]byte
	stats    Stats
	wire     []byte

	lastReport time.Time
	dirty      bool

	payloadState
	opener         // client
	exchanger      // both
	listening bool // server
}

// payloadState is --payload's: the bytes sent after the message, also the
// discard buffer; and (not with --unread) what each fd still has to send
// and to read. Allocated only then, so the 12-byte record stays all a plain
// run keeps per fd.
type payloadState struct {
	payload  []byte
	sendLeft []uint32
	readLeft []uint32
}

// opener is a client worker's connecting: its server, its sources and
// which are out of ports, the pacing and the census pause.
type opener struct {
	server    *rawSockaddr
	sources   []*rawSockaddr // IPv4, or IPv4-mapped IPv6 addresses (--family inet6)
	srcAddrs  [][4]byte      // the IPv4 address of each source, for failures
	domain    int            // AF_INET or AF_INET6
	exhausted []bool
	left      int // sources not yet out of ports
	nextSrc   int
	port      int  // --port-choice runner: the port being taken on each source in turn
	census    bool // paused at cfg.Census opened until CmdResume
	held      bool // CmdHold until CmdRelease
	opening   bool
	pending   int
	tokens    float64
	lastTick  time.Time
}

// exchanger is both ends' exchange: connections open and not yet through it.
type exchanger struct {
	waiting    int
	exchanging bool
	sending    bool // the exchange's first messages are still going out (sendBatch)
	sendNext   int  // the next fd to send its message to
	awaiting   int  // messages sent and not yet answered (stSent): at most cfg.Window
}

// Main is the whole life of a worker process; it returns the exit code.
func Main() int {
	var cfg Config
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe worker: reading configuration: %v (a c10mprobe-worker from another build? rebuild both: make build)\n", err)
		return 2
	}
	if cfg.Proto != ProtoVersion {
		fmt.Fprintf(os.Stderr, "c10mprobe worker: protocol %d, parent speaks %d: this worker is from another build; rebuild both (make build)\n", ProtoVersion, cfg.Proto)
		return 2
	}
	if cfg.Role == Ballast {
		return ballastMain(cfg)
	}
	if err := setNoFile(cfg.NoFile); err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe %s worker %d: %v\n", cfg.Role, cfg.Index, err)
		return 1
	}
	// SCHED_BATCH: a woken batch task does not preempt the running one
	// (check_preempt_wakeup_fair, kernel/sched/fair.c), so a client's connect
	// no longer switches to the server worker it wakes, and each side handles
	// many sockets per switch. Unprivileged; best effort.
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}, 0)
	// If the OOM killer must act, it takes a worker, which the parent
	// names, rather than the parent, which must restore the host. Raising
	// oom_score_adj needs no privilege (lowering the parent's would need
	// CAP_SYS_RESOURCE); a 3M-connection run once lost its parent for want
	// of this.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	if cfg.LockMemory {
		// Pages as they are touched (MCL_ONFAULT, Linux 4.4), not the
		// runtime's whole reservations; CAP_IPC_LOCK or RLIMIT_MEMLOCK.
		if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
			fmt.Fprintf(os.Stderr, "c10mprobe %s worker %d: locking its memory: %v\n", cfg.Role, cfg.Index, err)
		}
	}
	w, err := newWorker(cfg, ctlFD, listenerFD)
	if err == nil {
		// fds are handed out lowest first: the next free one is how many
		// the worker holds for itself before its first socket.
		if fd, derr := unix.Dup(0); derr == nil {
			w.stats.OwnFDs = uint32(fd)
			unix.Close(fd)
		}
		// Not debug.FreeOSMemory() here to drop package init's garbage:
		// measured, it raised the workers' PSS (≈ 230 → 270 B/conn at 200k).
		err = w.loop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe %s worker %d: %v\n", cfg.Role, cfg.Index, err)
		return 1
	}
	return 0
}

// newWorker sets up a worker on its control socket and, for a server, the
// shared listener. Its state is per fd, sized by cfg.NoFile: every fd it
// sees must be below that.
func newWorker(cfg Config, ctl, listener int) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if cfg.Window <= 0 {
		cfg.Window = exchangeWindow
	}
	w := &worker{
		cfg:      cfg,
		ctl:      ctl,
		listener: listener,
		epfd:     epfd,
		conns:    make([]conn, cfg.NoFile),
		events:   make([]unix.EpollEvent, 256),
		wire:     make([]byte, StatsSize),
	}
	if cfg.Payload > 0 {
		w.payload = make([]byte, cfg.Payload)
		if !cfg.Unread {
			w.sendLeft = make([]uint32, cfg.NoFile)
			w.readLeft = make([]uint32, cfg.NoFile)
		}
	}
	if err := w.add(w.ctl, unix.EPOLLIN); err != nil {
		return nil, err
	}
	switch cfg.Role {
	case Client:
		ap, err := netip.ParseAddrPort(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("parsing server address: %w", err)
		}
		w.domain = cfg.Family.Domain()
		w.server = makeRawSockaddr(cfg.Family, ap.Addr(), ap.Port())
		for _, s := range cfg.Sources {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("parsing source address: %w", err)
			}
			w.sources = append(w.sources, makeRawSockaddr(cfg.Family, a, 0))
			w.srcAddrs = append(w.srcAddrs, a.As4())
		}
		w.exhausted = make([]bool, len(w.sources))
		w.left = len(w.sources)
		w.nextSrc = cfg.Index % max(1, len(w.sources))
		if cfg.Ports[0] > 0 {
			w.port, w.nextSrc = cfg.Ports[0]+cfg.Index, 0
		}
		w.census = cfg.Census > 0 && cfg.Census < cfg.Quota
	case Server:
		// EPOLLEXCLUSIVE (Linux 4.5) wakes one of the server workers waiting
		// on the shared listener instead of all of them.
		if err := w.add(w.listener, unix.EPOLLIN|unix.EPOLLEXCLUSIVE); err != nil {
			return nil, err
		}
		w.listening = true
	default:
		return nil, fmt.Errorf("unknown worker role %q", cfg.Role)
	}
	return w, nil
}

// setNoFile sets RLIMIT_NOFILE to n, raising the hard limit where
// CAP_SYS_RESOURCE allows and keeping it otherwise.
func setNoFile(n uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return os.NewSyscallError("getrlimit", err)
	}
	want := unix.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("setting RLIMIT_NOFILE to %d (hard limit %d): %w", n, lim.Max, err)
	}
	return nil
}

// watch adds fd to the epoll set, returning the errno on failure.
func (w *worker) watch(fd int, events uint32) unix.Errno {
	w.ev = unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := rawEpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &w.ev); err != nil {
		errno, _ := err.(unix.Errno)
		return errno
	}
	return 0
}

func (w *worker) add(fd int, events uint32) error {
	w.ev = unix.EpollEvent{Events: events, Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &w.ev))
}

func (w *worker) loop() error {
	for {
		exit, err := w.step(w.timeout())
		if err != nil || exit {
			return err
		}
	}
}

// step waits up to timeout ms for events and handles them: one turn of the
// worker's loop.
func (w *worker) step(timeout int) (exit bool, err error) {
	// Whatever is ready now, without telling the scheduler (rawsys.go);
	// only an idle worker blocks, and it tells.
	n, err := rawEpollWait(w.epfd, w.events, 0)
	if n == 0 && err == nil && timeout != 0 {
		n, err = unix.EpollWait(w.epfd, w.events, timeout)
	}
	if err != nil && err != unix.EINTR {
		return true, os.NewSyscallError("epoll_wait", err)
	}
	for i := 0; i < n; i++ {
		ev := w.events[i]
		fd := int(ev.Fd)
		switch {
		case fd == w.ctl:
			if exit, err := w.command(); err != nil || exit {
				return true, err
			}
		case fd == w.listener && w.cfg.Role == Server:
			w.accept()
		case w.cfg.Role == Client:
			w.clientEvent(fd, ev.Events)
		default:
			w.serverEvent(fd, ev.Events)
		}
	}
	if w.opening {
		w.open()
	}
	if w.sending {
		w.sendBatch()
	}
	if w.census && w.opening && int(w.stats.Opened) >= w.cfg.Census && w.pending == 0 && w.stats.CensusDone == 0 {
		w.stats.CensusDone = 1
		w.dirty = true
		w.report(true)
	}
	if w.cfg.Role == Client && !w.opening && w.pending == 0 && w.stats.ConnectDone == 0 && w.stats.Opened+w.failedOpens() > 0 {
		w.stats.ConnectDone = 1
		w.dirty = true
		w.report(true)
	}
	w.report(false)
	return false, nil
}

// failedOpens counts the attempts that failed before connect() took them:
// socket(), bind() (a source that is not local) or the port search.
func (w *worker) failedOpens() uint64 {
	f := w.stats.Failed
	return f[FailEMFILE] + f[FailENFILE] + f[FailNoMem] + f[FailEpollWatches] + f[FailAddr] + f[FailPorts] + f[FailOther]
}

func (w *worker) timeout() int {
	if w.sending && w.awaiting < w.cfg.Window {
		return 0 // the next batch of messages is due at once
	}
	if w.opening && w.cfg.Rate > 0 && w.tokens < 1 && w.pending < w.cfg.Inflight {
		ms := int((1 - w.tokens) / w.cfg.Rate * 1000)
		return max(1, min(ms, 100))
	}
	return 100
}

func (w *worker) command() (exit bool, err error) {
	n, err := unix.Read(w.ctl, w.buf[:1])
	if err == unix.EINTR || err == unix.EAGAIN {
		return false, nil
	}
	if err != nil {
		return true, os.NewSyscallError("read control", err)
	}
	if n == 0 {
		return true, nil // the parent is gone; PR_SET_PDEATHSIG will also fire
	}
	switch Command(w.buf[0]) {
	case CmdConnect:
		w.opening = w.cfg.Quota > 0 && len(w.sources) > 0
		w.lastTick = time.Now()
		w.tokens = 1
		if !w.opening {
			w.stats.ConnectDone = 1
		}
	case CmdStop:
		if w.opening {
			w.opening = false
		}
		if w.cfg.Role == Server {
			w.stopListening() // serve: accept no more
		}
		if w.cfg.Role == Client && w.pending == 0 {
			w.stats.ConnectDone = 1
		}
	case CmdExchange:
		w.exchange()
	case CmdFinish:
		w.finish()
	case CmdClose:
		w.closeAll()
	case CmdExit:
		return true, nil
	case CmdResume:
		w.census = false
	case CmdAccept:
		if w.listening {
			w.accept()
		}
	case CmdHold:
		w.held = true
	case CmdRelease:
		w.held = false
	}
	w.dirty = true
	w.report(true)
	return false, nil
}

// report sends the stats to the parent at most every 100 ms, or now if forced.
func (w *worker) report(force bool) {
	now := time.Now()
	if !w.dirty || (!force && now.Sub(w.lastReport) < 100*time.Millisecond) {
		return
	}
	// A blocking write on a SEQPACKET socket: the parent reads continuously.
	if _, err := unix.Write(w.ctl, w.stats.Marshal(w.wire)); err == nil {
		w.lastReport, w.dirty = now, false
	}
}

// fail counts a failure; limit failures also become the worker's first failure.
func (w *worker) fail(k FailKind, errno unix.Errno, src *[4]byte) {
	w.stats.Failed[k]++
	w.dirty = true
	if w.stats.FirstFail != 0 {
		return
	}
	switch k {
	case FailEMFILE, FailENFILE, FailPorts, FailAddr, FailNoMem, FailEpollWatches, FailOther:
		w.stats.FirstFail = uint8(k) + 1
		w.stats.FirstFailErrno = uint32(errno)
		if src != nil {
			w.stats.FirstFailSrc = *src
		}
	}
}

// resourceFail classifies the errno of a call that takes a resource for a
// new connection: socket(), accept4(), epoll_ctl(ADD).
func resourceFail(errno unix.Errno) FailKind {
	switch errno {
	case unix.EMFILE:
		return FailEMFILE
	case unix.ENFILE:
		return FailENFILE
	case unix.ENOSPC:
		// epoll_ctl: the user's epoll watches reached fs.epoll.max_user_watches
		// (ep_insert, fs/eventpoll.c).
		return FailEpollWatches
	case unix.ENOMEM, unix.ENOBUFS:
		return FailNoMem
	}
	return FailOther
}

func (w *worker) dropConn(fd int, k FailKind, errno unix.Errno) {
	c := &w.conns[fd]
	if c.state == stOpen || c.state == stSent || c.state == stPayload {
		w.waiting--
	}
	if c.state == stSent {
		w.awaiting--
	}
	*c = conn{}
	if w.sendLeft != nil {
		w.sendLeft[fd], w.readLeft[fd] = 0, 0
	}
	rawClose(fd)
	w.fail(k, errno, nil)
}

// finish counts every connection still short of the exchange as timed out,
// or short of its payload. Only the end that checks the echo counts (the
// built-in server, or an echo client): a client's unanswered connection is
// the same one the server side already counts, and would be counted twice.
func (w *worker) finish() {
	for fd := range w.conns {
		if w.cfg.Role != Server && w.cfg.Exchange != ExchangeEcho {
			break
		}
		c := &w.conns[fd]
		switch c.state {
		case stOpen, stSent, stConnecting:
			w.stats.Failed[FailTimeout]++
		case stPayload:
			w.stats.Failed[FailPayloadShort]++
		default:
			continue
		}
		// Counted once: a peer that closes it later is no second failure.
		c.state = stDone
	}
	w.stats.ExchangeDone = 1
}

// closeAll closes every socket. Clients close with SO_LINGER {1, 0}: an RST
// instead of a FIN, so no TIME_WAIT socket holds a port for 60 s after the
// run and the next run starts from an empty table.
func (w *worker) closeAll() {
	start := time.Now()
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	quiet := w.cfg.QuietClose
	for fd := range w.conns {
		if w.conns[fd].state == stFree {
			continue
		}
		// Both ends ours: TCP_REPAIR (CAP_NET_ADMIN) makes close() send
		// nothing (__tcp_close → tcp_disconnect skips the RST in repair
		// mode), so neither the RST nor the peer's handling of it is paid,
		// and the peer closes its end the same way. Refused, the RST.
		if quiet && rawSetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, 1) != nil {
			quiet = false
		}
		// Otherwise clients close with an RST, and serve's server, which
		// closes first, its dialers being elsewhere: no TIME_WAIT is left
		// on either host.
		if !quiet && (w.cfg.Role == Client || w.cfg.Stream) {
			_ = rawSetsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, unsafe.Pointer(linger), unix.SizeofLinger)
		}
		if err := rawClose(fd); err == nil || !errors.Is(err, unix.EBADF) {
			w.stats.Closed++
		}
		w.conns[fd] = conn{}
	}
	w.waiting, w.pending, w.opening = 0, 0, false
	w.stats.CloseNanos = int64(time.Since(start))
	w.stats.CloseDone = 1
}
