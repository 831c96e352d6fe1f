package host

// run --netns: both ends in a private network namespace. The process that
// makes it stays in the host's namespace and sets
// net.ipv4.tcp_child_ehash_entries, which the kernel reads when a namespace
// is made, so it must be the host's, in a journal of its own; the run in the
// namespace makes its net.* changes there, and they end with it.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/sysctl"
	"golang.org/x/sys/unix"
)

// childEhashKey sizes the established hash of namespaces made from now on
// (Linux 6.1, commit d1e5e6408b30); 0 shares the host's.
const childEhashKey = "net.ipv4.tcp_child_ehash_entries"

// ChildEhashName names the namespace's hash change.
const ChildEhashName = "namespace hash"

// ChildEhash sizes the established hash of the namespace a --netns run
// makes next, from the host's namespace.
type ChildEhash struct {
	Dir   string // the run directory
	Conns int
	Log   io.Writer

	journal *sysctl.Journal
}

func (c *ChildEhash) Name() string { return ChildEhashName }

// Check refuses a kernel without the sysctl.
func (c *ChildEhash) Check() error {
	if err := sysctl.Check(childEhashKey); err != nil {
		return fmt.Errorf("--netns: %v (Linux 6.1 or later)", err)
	}
	return nil
}

// Apply sets the hash to childEhash(Conns) buckets, journaled.
func (c *ChildEhash) Apply() error {
	c.journal = sysctl.NewJournal(filepath.Join(c.Dir, rundir.NetnsJournal))
	if _, err := c.journal.Set(childEhashKey, strconv.Itoa(childEhash(c.Conns))); err != nil {
		return fmt.Errorf("--netns: %v (Linux 6.1 or later)", err)
	}
	return nil
}

// Undo puts the host's value back.
func (c *ChildEhash) Undo() error {
	if c.journal == nil {
		return nil
	}
	return c.journal.Restore()
}

// restoreChildEhash puts back the host value a killed --netns run set.
func restoreChildEhash(dir string) (string, error) {
	return "", restoreJournal(filepath.Join(dir, rundir.NetnsJournal), "")
}

// childEhash is the buckets for conns connections, both ends in the
// namespace: a power of two of at least one bucket a socket, within the
// kernel's 16M most (tcp_child_ehash_entries_max).
func childEhash(conns int) int {
	n := 1 << 10
	for n < 2*conns && n < 16<<20 {
		n *= 2
	}
	return n
}

// UpLoopback brings up lo in this process's new network namespace, where
// it starts down.
func UpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return os.NewSyscallError("SIOCSIFFLAGS lo", unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr))
}

// RunInNewNetns runs this executable again with args in a new network
// namespace, env added to its environment, on this process's stdio, and
// returns its exit code. Its own process group: a terminal's ^C reaches
// this process alone, which passes each signal on once. Killed, this
// process takes the run down with it (SIGTERM: the run restores what it
// changed).
func RunInNewNetns(args []string, env string) (code int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Setpgid: true, Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("--netns: starting the run in a new network namespace: %w", err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 {
			return 0, fmt.Errorf("the run in the network namespace: %v", err) // killed
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}
