// Package testhost serializes the test binaries that measure this host:
// one package's slab and socket counts are off while another's tests open
// or close thousands of sockets, and go test runs packages in parallel
// unless given -p 1.
package testhost

import (
	"time"

	"golang.org/x/sys/unix"
)

// Hold waits until no other measuring test binary runs, then holds the host
// until this process exits. The lock is a unix socket bound in the abstract
// namespace: the kernel frees the name when the process dies, and nothing
// is left on disk.
func Hold() {
	for {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return // measure anyway; a failure will say why
		}
		if unix.Bind(fd, &unix.SockaddrUnix{Name: "@c10mprobe-tests"}) == nil {
			return // fd stays open until exit
		}
		unix.Close(fd)
		time.Sleep(100 * time.Millisecond)
	}
}
