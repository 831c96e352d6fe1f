package worker

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// Exchange is what a connection does once open, to count as verified.
type Exchange string

const (
	// ExchangeNumbered: the built-in server sends each connection its
	// number, the client echoes it, the server checks it.
	ExchangeNumbered Exchange = "numbered"
	// ExchangeEcho: the client sends its number (and --payload), and any
	// echo server sends the same bytes back.
	ExchangeEcho Exchange = "echo"
	// ExchangeNone: connect and hold; sock_diag verifies at the end of the
	// hold that both ends are ESTABLISHED and the server accepted.
	ExchangeNone Exchange = "none"
)

// Family is the address family of the run's sockets.
type Family string

const (
	FamilyInet  Family = "inet"
	FamilyInet6 Family = "inet6"
)

// Domain is the family's AF_ constant.
func (f Family) Domain() int {
	if f == FamilyInet6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Sockaddr is a's socket address in the family: for inet6 the IPv4-mapped
// IPv6 address, which tcp_v6_connect() hands to tcp_v4_connect() while the
// sock stays a TCPv6 one.
func (f Family) Sockaddr(a netip.Addr, port uint16) unix.Sockaddr {
	if f == FamilyInet6 {
		return &unix.SockaddrInet6{Port: int(port), Addr: a.As16()}
	}
	return &unix.SockaddrInet4{Port: int(port), Addr: a.As4()}
}
