package nshop

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"golang.org/x/sys/unix"
)

// The main goroutine keeps the main thread, so that TestMain can hop from it.
func init() { runtime.LockOSThread() }

// fromMain is what the hop from the main thread saw, or why it was not made.
var fromMain struct {
	before, during, after string
	err                   error
}

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		hopFromTheMainThread()
	}
	os.Exit(m.Run())
}

// hopFromTheMainThread makes the hop that a goroutine scheduled on the main
// thread makes: /proc/self names the main thread's namespace, before and
// after.
func hopFromTheMainThread() {
	path, release, err := newNamespace()
	if err != nil {
		fromMain.err = err
		return
	}
	defer release()
	fromMain.before, _ = os.Readlink("/proc/self/ns/net")
	runtime.LockOSThread() // on unlocks once; init's lock stays
	fromMain.err = on(path, func() (err error) {
		fromMain.during, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	fromMain.after, _ = os.Readlink("/proc/self/ns/net")
}

// newNamespace makes a network namespace on a thread of its own, which holds
// it until release.
func newNamespace() (path string, release func(), err error) {
	made, end := make(chan error, 1), make(chan struct{})
	var tid int
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the namespace
		tid = unix.Gettid()
		made <- unix.Unshare(unix.CLONE_NEWNET)
		<-end
	}()
	if err := <-made; err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), tid), func() { close(end) }, nil
}

func TestTheMainThreadComesBack(t *testing.T) {
	testenv.NeedRoot(t, "makes a network namespace")
	m := fromMain
	if m.err != nil || m.during == "" || m.during == m.before || m.after != m.before {
		t.Errorf("from the main thread in %s: f ran in %s, and the main thread is in %s after (%v); want another, then %s again",
			m.before, m.during, m.after, m.err, m.before)
	}
}

// Do runs f in the namespace, and its thread goes back where it was.
func TestDoRunsInTheNamespaceAndComesBack(t *testing.T) {
	testenv.NeedRoot(t, "makes a network namespace")
	path, release, err := newNamespace()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	theirs, _ := os.Readlink(path)
	var during string
	if err := Do(path, func() (err error) {
		during, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil || during != theirs {
		t.Errorf("Do: f ran in %q (%v), want %s", during, err, theirs)
	}
	// On a thread locked twice, on's unlock leaves it locked: it is the
	// same thread, back in its namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	runtime.LockOSThread()
	own, _ := os.Readlink("/proc/thread-self/ns/net")
	wantErr := fmt.Errorf("f's own error")
	if err := on(path, func() error { return wantErr }); err != wantErr {
		t.Errorf("on returned %v, want f's error", err)
	}
	if back, _ := os.Readlink("/proc/thread-self/ns/net"); back != own {
		t.Errorf("the thread is in %s after the hop, want %s", back, own)
	}
	if err := Do("/nonexistent/ns/net", func() error { return nil }); err == nil {
		t.Error("Do joined a namespace that does not exist")
	}
}
