package host

// The keeper of a smaller machine: the huge pages go back when the run
// dies without giving them back.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/c10mprobe/c10mprobe/internal/sysctl"
)

// KeeperArg, as the first argument, makes this executable a machine's
// keeper (KeepMachine; cmd/c10mprobe's main).
const KeeperArg = "__c10mprobe-machine-keeper"

// KeeperRole is the keeper's role in a run's workers.pids.
const KeeperRole = "keeper"

// keeper is the run's side of its keeper: the write end of the keeper's
// stdin, and its pid.
type keeper struct {
	w   *os.File
	pid int
}

// startKeeper starts the keeper of the run whose journal is at journal: a
// process in a session of its own (a terminal's ^C and a kill of the run's
// process group do not reach it) that reads its stdin, a pipe whose write
// end this process alone holds (close-on-exec: no worker inherits it),
// until EOF, which comes when this process exits however it does; then it
// gives back the huge pages the journal still holds. Killed, a run left
// the host its smaller machine until `restore`: on Debian's 6.1 under TCG
// the OOM killer then took what else ran and the kernel panicked ("System
// is deadlocked on memory", the VM tier's TestMachineRestoreAfterSIGKILL,
// 2026-12-07).
func (ma *Machine) startKeeper(journal string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, KeeperArg, journal)
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the machine's keeper: %w", err)
	}
	ma.keeper = keeper{w: w, pid: cmd.Process.Pid}
	go func() { _ = cmd.Wait() }() // reaped when it ends, before this process does
	return nil
}

// stopKeeper lets the keeper go: the huge pages are back.
func (ma *Machine) stopKeeper() {
	if ma.keeper.w != nil {
		ma.keeper.w.Close()
		ma.keeper.w = nil
	}
}

// KeeperPid is the keeper's pid, 0 before it starts.
func (ma *Machine) KeeperPid() int { return ma.keeper.pid }

// KeepMachine is the keeper's body: it waits for EOF on stdin, then
// restores vm.nr_hugepages from the journal at path where the run did not,
// and says so on stderr. It keeps its pages in RAM, as the run's own
// processes do: it must run on a machine that may be deep in swap.
func KeepMachine(path string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	_ = unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	_, _ = io.Copy(io.Discard, os.Stdin)
	j, err := sysctl.LoadJournal(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "c10mprobe keeper: %v\n", err)
		return 1
	}
	held := false
	for _, c := range j.Changes() {
		held = held || c.Key == hugePagesKey && !c.Restored
	}
	if !held {
		return 0 // the run gave them back
	}
	now, _ := sysctl.Read(hugePagesKey)
	if err := j.RestoreKey(hugePagesKey); err != nil {
		fmt.Fprintf(os.Stderr, "c10mprobe keeper: the run died holding its huge pages, and giving them back failed: %v; run `c10mprobe restore %s`\n", err, filepath.Dir(path))
		return 1
	}
	back, _ := sysctl.Read(hugePagesKey)
	fmt.Fprintf(os.Stderr, "c10mprobe keeper: the run died holding the rest of RAM as huge pages; %s %s → %s, given back (`c10mprobe restore %s` undoes the rest)\n",
		hugePagesKey, now, back, filepath.Dir(path))
	return 0
}
