package sysctl

import (
	"os"
	"runtime"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestInitialOnlyKeyFromANamespace: net.core.netdev_max_backlog is not in
// a new network namespace's /proc/sys; read from a thread in one, it is
// read from the initial namespace, and it is journaled as host-wide.
func TestInitialOnlyKeyFromANamespace(t *testing.T) {
	testenv.NeedRoot(t, "makes a network namespace")
	if _, err := os.Readlink("/proc/1/ns/net"); err != nil {
		testenv.Skip(t, testenv.HostForbids, "the initial network namespace cannot be reached: %v", err)
	}
	const key = "net.core.netdev_max_backlog"
	want, err := Read(key)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		value, netns string
		direct, err  error
	}
	done := make(chan got, 1)
	go func() {
		// Never unlocked: the thread, in its namespace, ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- got{err: err}
			return
		}
		_, direct := os.ReadFile(Path(key))
		v, err := Read(key)
		done <- got{value: v, netns: netnsOf(key), direct: direct, err: err}
	}()
	g := <-done
	if g.err != nil || g.value != want || g.netns != "" || !os.IsNotExist(g.direct) {
		t.Errorf("from a new namespace: %q, %v, journaled netns %q, own /proc/sys %v; want %q from the initial one, host-wide, not in its own", g.value, g.err, g.netns, g.direct, want)
	}
}

// The main thread stays the main goroutine's here, so that the test's
// namespace goroutine runs on another: one that unshares and ends on the
// main thread would wedge it in its namespace (runtime.mexit), and
// /proc/self would then agree with the thread by chance.
func init() { runtime.LockOSThread() }

// A key of a namespace's own is journaled as the namespace of the thread
// that set it, not the main thread's (/proc/self), which is elsewhere.
func TestOwnKeyJournaledWithTheThreadsNamespace(t *testing.T) {
	testenv.NeedRoot(t, "makes a network namespace")
	done := make(chan [3]string, 1)
	go func() {
		// Never unlocked: the thread, in its namespace, ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- [3]string{"", "", err.Error()}
			return
		}
		thread, _ := os.Readlink("/proc/thread-self/ns/net")
		done <- [3]string{netnsOf("net.core.somaxconn"), thread, ""}
	}()
	g := <-done
	main, _ := os.Readlink("/proc/self/ns/net")
	if g[2] != "" || g[0] != g[1] || g[0] == main {
		t.Errorf("net.core.somaxconn set from a thread in %s journaled as %q (the main thread's namespace %s): %s", g[1], g[0], main, g[2])
	}
}
