package host

import (
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
)

// HeldPorts finds the ports of [lo, hi] that other programs' TCP sockets
// hold now, on any address, in any state (TIME_WAIT included), IPv4 and IPv6.
//
// connect() skips every port whose bind bucket was made by bind() — on any
// address, since the bucket is the port's (__inet_hash_connect,
// net/ipv4/inet_hashtables.c) — so an explicitly bound client's ports,
// TIME_WAIT ones for their 60 s, shrink every source address's range.
// sock_diag cannot tell a bind() bucket from a connect() one, which does not
// block: the count is an upper bound, and the plan errs towards more source
// addresses. An earlier run's sockets count too: with the runner's ports
// (the default) they were bound, and a killed run's linger in TIME_WAIT.
func HeldPorts(lo, hi int) (HeldPortSet, error) {
	held := NewHeldPortSet(lo, hi)
	see := func(s *sockdiag.Socket) { held.Hold(int(s.Local.Port())) }
	if err := sockdiag.DumpIPv4(sockdiag.AllStates, see); err != nil {
		return HeldPortSet{}, err
	}
	// A host without IPv6 has no IPv6 sockets to hold ports.
	_ = sockdiag.DumpIPv6(sockdiag.AllStates, see)
	return held, nil
}

// HeldPortSet is which ports of a range some socket holds.
type HeldPortSet struct {
	lo   int
	held []bool
}

// NewHeldPortSet is a set of ports lo..hi, none held.
func NewHeldPortSet(lo, hi int) HeldPortSet { return HeldPortSet{lo: lo, held: make([]bool, hi-lo+1)} }

// Hold marks port p held.
func (h HeldPortSet) Hold(p int) {
	if p >= h.lo && p-h.lo < len(h.held) {
		h.held[p-h.lo] = true
	}
}

// Count is how many of from..to are held.
func (h HeldPortSet) Count(from, to int) int {
	n := 0
	for p := max(from, h.lo); p <= to && p-h.lo < len(h.held); p++ {
		if h.held[p-h.lo] {
			n++
		}
	}
	return n
}
