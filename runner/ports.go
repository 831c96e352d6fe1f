package runner

import (
	"github.com/c10mprobe/c10mprobe/internal/sockdiag"
)

// heldPorts finds the ports of [lo, hi] that other programs' TCP sockets
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
func heldPorts(lo, hi int) (heldPortSet, error) {
	held := heldPortSet{lo: lo, held: make([]bool, hi-lo+1)}
	see := func(s *sockdiag.Socket) {
		if p := int(s.Local.Port()); p >= lo && p <= hi {
			held.held[p-lo] = true
		}
	}
	if err := sockdiag.DumpIPv4(sockdiag.AllStates, see); err != nil {
		return heldPortSet{}, err
	}
	// A host without IPv6 has no IPv6 sockets to hold ports.
	_ = sockdiag.DumpIPv6(sockdiag.AllStates, see)
	return held, nil
}

// heldPortSet is which ports of a range some socket holds.
type heldPortSet struct {
	lo   int
	held []bool
}

// count is how many of from..to are held.
func (h heldPortSet) count(from, to int) int {
	n := 0
	for p := max(from, h.lo); p <= to && p-h.lo < len(h.held); p++ {
		if h.held[p-h.lo] {
			n++
		}
	}
	return n
}
