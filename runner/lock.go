package runner

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A run changes host-wide sysctls and journals the values it found; two
// runs at once would each journal the other's settings, and the later to
// finish would put them back, leaving the host changed. Every run and every
// restore holds this lock: a listening unix socket in the abstract
// namespace, which only one process can bind, which the kernel releases
// when its holder dies (SIGKILL included), and which leaves no file behind.
// Its scope is the network namespace, the scope of the net.* sysctls a run
// changes. The socket is close-on-exec, so workers do not hold it.
const hostLockName = "@c10mprobe-host-lock"

// ErrHostBusy says another c10mprobe holds the host.
var ErrHostBusy = errors.New("another c10mprobe run or restore is using this host")

// LockHost takes the host lock, or returns ErrHostBusy naming its holder.
func LockHost() (unlock func(), err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the host lock socket: %w", err)
	}
	addr := &unix.SockaddrUnix{Name: hostLockName}
	if err := unix.Bind(fd, addr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			if pid := lockHolder(addr); pid > 0 {
				return nil, fmt.Errorf("%w (pid %d)", ErrHostBusy, pid)
			}
			return nil, ErrHostBusy
		}
		return nil, fmt.Errorf("binding the host lock socket: %w", err)
	}
	// Listening lets a second process ask who holds the lock.
	if err := unix.Listen(fd, 8); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening on the host lock socket: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// lockHolder connects to the lock socket and reads its owner's pid
// (SO_PEERCRED holds the listener's credentials from listen(2)).
func lockHolder(addr *unix.SockaddrUnix) int32 {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	if unix.Connect(fd, addr) != nil {
		return 0
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0
	}
	return cred.Pid
}
