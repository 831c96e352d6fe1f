// Package hostlock is a named lock held by one process on this host: a
// listening unix socket bound in the abstract namespace. Only one process
// can bind a name; the kernel frees it when its holder dies, SIGKILL
// included, so it never goes stale and leaves nothing on disk. Its scope is
// the network namespace. The socket is close-on-exec, so child processes
// do not hold it.
package hostlock

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Busy says another process holds the name; Pid is 0 when it could not be
// learned.
type Busy struct{ Pid int32 }

func (b *Busy) Error() string {
	if b.Pid > 0 {
		return fmt.Sprintf("held by pid %d", b.Pid)
	}
	return "held by another process"
}

// Take holds name until release is called or the process exits, or
// returns a *Busy naming the holder.
func Take(name string) (release func(), err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the lock socket: %w", err)
	}
	addr := &unix.SockaddrUnix{Name: "@" + name}
	if err := unix.Bind(fd, addr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, &Busy{Pid: holder(addr)}
		}
		return nil, fmt.Errorf("binding the lock socket: %w", err)
	}
	// Listening lets a second process ask who holds the lock.
	if err := unix.Listen(fd, 8); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening on the lock socket: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// Wait takes name, waiting while another process holds it. On any other
// error it returns without the lock.
func Wait(name string) error {
	for {
		_, err := Take(name)
		var busy *Busy
		if !errors.As(err, &busy) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holder connects to the lock socket and reads its owner's pid
// (SO_PEERCRED holds the listener's credentials from listen(2)).
func holder(addr *unix.SockaddrUnix) int32 {
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
