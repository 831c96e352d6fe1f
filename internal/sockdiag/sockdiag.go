// Package sockdiag dumps TCP sockets through NETLINK_SOCK_DIAG, the interface
// `ss -tm` reads, one socket at a time: a million-connection run has two
// million sockets, too many to collect in a slice first.
package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Kernel ABI from include/uapi/linux/inet_diag.h; x/sys/unix has the
// constants but not these structs.
const (
	sizeofReqV2   = 56 // struct inet_diag_req_v2
	sizeofDiagMsg = 72 // struct inet_diag_msg
	attrSkMeminfo = 7  // INET_DIAG_SKMEMINFO
)

// TCP states (include/net/tcp_states.h), as bit numbers of the dump's state mask.
const (
	StateEstablished = 1
	StateSynSent     = 2
	StateSynRecv     = 3
	StateFinWait2    = 5
	StateTimeWait    = 6
	StateClose       = 7
	StateListen      = 10
)

// AllStates asks for every state.
const AllStates = ^uint32(0)

// Socket is one dumped TCP socket.
type Socket struct {
	State  uint8
	Local  netip.AddrPort
	Remote netip.AddrPort
	Inode  uint32
	RQueue uint32
	WQueue uint32
	// Mem is the SK_MEMINFO array: rmem_alloc, rcvbuf, wmem_alloc, sndbuf,
	// fwd_alloc, wmem_queued, optmem, backlog, drops; HasMem says it came.
	Mem    [unix.SK_MEMINFO_VARS]uint32
	HasMem bool
	// family, ifindex and cookie name the socket to the kernel (Destroy).
	family  uint8
	ifindex uint32
	cookie  [2]uint32
}

// Queued is the truesize of the skbs queued on the socket: received and not
// read, and sent and not yet acknowledged. Real memory, slab and pages.
func (s *Socket) Queued() uint64 {
	return uint64(s.Mem[unix.SK_MEMINFO_RMEM_ALLOC]) + uint64(s.Mem[unix.SK_MEMINFO_WMEM_QUEUED])
}

// Buffered is what the socket holds against tcp_mem: the queued skbs plus
// forward allocation (charged credit, not yet memory) and option memory.
func (s *Socket) Buffered() uint64 {
	m := &s.Mem
	return uint64(m[unix.SK_MEMINFO_RMEM_ALLOC]) + uint64(m[unix.SK_MEMINFO_WMEM_QUEUED]) +
		uint64(m[unix.SK_MEMINFO_FWD_ALLOC]) + uint64(m[unix.SK_MEMINFO_OPTMEM])
}

// DumpIPv4 calls fn for every IPv4 TCP socket whose state bit is set in
// states; the *Socket is reused between calls.
func DumpIPv4(states uint32, fn func(*Socket)) error { return dump(unix.AF_INET, states, fn) }

// DumpIPv6 is DumpIPv4 for AF_INET6 sockets (a JVM's, on a dual-stack host,
// IPv4-mapped): their addresses come unmapped where they are IPv4.
func DumpIPv6(states uint32, fn func(*Socket)) error { return dump(unix.AF_INET6, states, fn) }

// request opens a NETLINK_SOCK_DIAG socket and sends it one message of
// type typ: an inet_diag_req_v2 for TCP sockets of family in states, which
// fill may complete. The caller reads the answer and closes fd.
func request(typ, flags uint16, family uint8, states uint32, fill func(r []byte)) (fd int, err error) {
	fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	req := make([]byte, unix.SizeofNlMsghdr+sizeofReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], typ)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|flags)
	ne.PutUint32(req[8:], 1) // sequence
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], states)
	if fill != nil {
		fill(r)
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("sendto(NETLINK_SOCK_DIAG)", err)
	}
	return fd, nil
}

func dump(family uint8, states uint32, fn func(*Socket)) error {
	fd, err := request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP, family, states, func(r []byte) {
		r[2] = 1 << (attrSkMeminfo - 1) // idiag_ext
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian

	// A recvmsg returns one skb of the dump, which the kernel sizes at
	// most 32 KiB (netlink_recvmsg caps max_recvmsg_len there): a larger
	// buffer is never filled, only allocated anew for every dump.
	buf := make([]byte, 64<<10)
	var s Socket
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("recvfrom(NETLINK_SOCK_DIAG)", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:]))
			typ := ne.Uint16(b[4:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("sock_diag: malformed netlink message of length %d", l)
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				errno := int32(ne.Uint32(b[unix.SizeofNlMsghdr:]))
				return fmt.Errorf("sock_diag dump: %w", unix.Errno(-errno))
			case unix.SOCK_DIAG_BY_FAMILY:
				if err := parse(family, b[unix.SizeofNlMsghdr:l], &s); err != nil {
					return err
				}
				fn(&s)
			}
			b = b[min(len(b), nlmsgAlign(l)):]
		}
	}
}

func parse(family uint8, b []byte, s *Socket) error {
	if len(b) < sizeofDiagMsg {
		return fmt.Errorf("sock_diag: short inet_diag_msg (%d bytes)", len(b))
	}
	ne := binary.NativeEndian
	*s = Socket{State: b[1], family: family}
	// inet_diag_sockid: sport, dport (big endian), src[4], dst[4] words.
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	if family == unix.AF_INET6 {
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])).Unmap(), dport)
	} else {
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[24:28])), dport)
	}
	s.ifindex = ne.Uint32(b[40:])
	s.cookie = [2]uint32{ne.Uint32(b[44:]), ne.Uint32(b[48:])}
	s.RQueue = ne.Uint32(b[56:])
	s.WQueue = ne.Uint32(b[60:])
	s.Inode = ne.Uint32(b[68:])
	for a := b[sizeofDiagMsg:]; len(a) >= 4; {
		l := int(ne.Uint16(a[0:]))
		typ := ne.Uint16(a[2:])
		if l < 4 || l > len(a) {
			break
		}
		if typ == attrSkMeminfo {
			for i := range s.Mem {
				if off := 4 + 4*i; off+4 <= l {
					s.Mem[i] = ne.Uint32(a[off:])
				}
			}
			s.HasMem = true
		}
		a = a[min(len(a), nlmsgAlign(l)):]
	}
	return nil
}

func nlmsgAlign(l int) int { return (l + 3) &^ 3 }

// Destroy closes a dumped socket, as `ss -K` does (SOCK_DESTROY,
// CONFIG_INET_DIAG_DESTROY): a TIME_WAIT socket is freed at once. The
// kernel matches the socket by its addresses, ports, interface and cookie.
func Destroy(s *Socket) error {
	fd, err := request(unix.SOCK_DESTROY, unix.NLM_F_ACK, s.family, 1<<s.State, func(r []byte) {
		// inet_diag_sockid: ports big endian, then src[4], dst[4] words,
		// the interface and the cookie.
		id := r[8:]
		binary.BigEndian.PutUint16(id[0:], s.Local.Port())
		binary.BigEndian.PutUint16(id[2:], s.Remote.Port())
		for i, a := range []netip.Addr{s.Local.Addr(), s.Remote.Addr()} {
			dst := id[4+16*i : 20+16*i]
			if s.family == unix.AF_INET6 {
				b := a.As16()
				copy(dst, b[:])
			} else {
				b := a.As4()
				copy(dst, b[:])
			}
		}
		ne := binary.NativeEndian
		ne.PutUint32(id[36:], s.ifindex)
		ne.PutUint32(id[40:], s.cookie[0])
		ne.PutUint32(id[44:], s.cookie[1])
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return os.NewSyscallError("recvfrom(SOCK_DESTROY)", err)
	}
	ne := binary.NativeEndian
	if n >= unix.SizeofNlMsghdr+4 && ne.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		if errno := int32(ne.Uint32(buf[unix.SizeofNlMsghdr:])); errno != 0 {
			return fmt.Errorf("sock_diag destroy: %w", unix.Errno(-errno))
		}
	}
	return nil
}
