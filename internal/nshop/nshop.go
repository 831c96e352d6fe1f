// Package nshop runs a function in another network namespace and comes back.
//
// setns(2) moves the calling thread only, and /proc/sys/net, sock_diag and
// /proc/thread-self/net answer for the calling thread's namespace, so the
// function runs on a locked thread that joined the namespace. The thread
// joins its own namespace again before it is unlocked. A thread left in the
// other namespace would end with its goroutine, except the main thread:
// the Go runtime wedges it instead (runtime.mexit), and the main thread is
// what /proc/self and /proc/net name, so every later read through them
// would answer for the wrong namespace (seen in a --netns run on Debian's
// 6.1: its sysctls journaled as the initial namespace's).
package nshop

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on a thread in the network namespace at path (a /proc/PID/ns/net
// or a bind mount of one) and returns f's error.
func Do(path string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- on(path, f)
	}()
	return <-done
}

// on runs f on the locked calling thread in path's namespace, then puts the
// thread back and unlocks it; a thread that cannot go back stays locked, so
// that it ends with its goroutine.
func on(path string, f func() error) error {
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening this thread's network namespace: %w", err)
	}
	defer unix.Close(own)
	theirs, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the network namespace %s: %w", path, err)
	}
	defer unix.Close(theirs)
	if err := unix.Setns(theirs, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("joining the network namespace %s: %w", path, err)
	}
	ferr := f()
	if err := unix.Setns(own, unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	}
	return ferr
}
