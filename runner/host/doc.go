// Package host is what a run changes on the host and puts back, each change
// one lifecycle (Change: apply, undo; a Restorer for after a SIGKILL): the
// swapfile, the memory cgroup and its cap; and what guards the host between
// runs: the host lock, the ports other programs hold.
//
// It imports golang.org/x/sys/unix, the standard library and internal/;
// never runner, whose phases call it.
package host
