package worker

// A worker's calls on its sockets go through RawSyscall. Every socket is
// non-blocking, so none of them waits, and Syscall's bookkeeping for the Go
// scheduler (entersyscall, exitsyscall) is pure cost: it adds two thirds to
// a trivial call here (docs/measurements.md, "Rate"), and a connection takes about 14. Only an epoll_wait that blocks stays
// a Syscall, so that the runtime may run its other threads meanwhile.

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSockaddr is a socket address as the kernel reads it.
type rawSockaddr struct {
	buf [unix.SizeofSockaddrInet6]byte
	len uintptr
}

// makeRawSockaddr is a's address in family f (inet6: IPv4-mapped).
func makeRawSockaddr(f Family, a netip.Addr, port uint16) *rawSockaddr {
	var r rawSockaddr
	if f == FamilyInet6 {
		binary.NativeEndian.PutUint16(r.buf[0:], unix.AF_INET6)
		a16 := a.As16()
		copy(r.buf[8:24], a16[:])
		r.len = unix.SizeofSockaddrInet6
	} else {
		binary.NativeEndian.PutUint16(r.buf[0:], unix.AF_INET)
		a4 := a.As4()
		copy(r.buf[4:8], a4[:])
		r.len = unix.SizeofSockaddrInet4
	}
	r.setPort(port)
	return &r
}

// setPort sets the port, in network byte order at the same offset for
// sockaddr_in and sockaddr_in6.
func (r *rawSockaddr) setPort(port uint16) { binary.BigEndian.PutUint16(r.buf[2:], port) }

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawSocket(domain, typ int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(domain), uintptr(typ), 0)
	return int(fd), errnoErr(e)
}

func rawBind(fd int, sa *rawSockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa.buf[0])), sa.len)
	return errnoErr(e)
}

func rawConnect(fd int, sa *rawSockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.buf[0])), sa.len)
	return errnoErr(e)
}

func rawClose(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errnoErr(e)
}

func rawRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}

func rawEpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawSetsockopt(fd, level, opt int, val unsafe.Pointer, size uintptr) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(val), size, 0)
	return errnoErr(e)
}

func rawSetsockoptInt(fd, level, opt, v int) error {
	i := int32(v)
	return rawSetsockopt(fd, level, opt, unsafe.Pointer(&i), 4)
}

func rawGetsockoptInt(fd, level, opt int) (int, error) {
	var v int32
	size := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&size)), 0)
	return int(v), errnoErr(e)
}
