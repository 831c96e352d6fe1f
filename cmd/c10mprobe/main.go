package main

import (
	"os"
	"runtime"

	"github.com/c10mprobe/c10mprobe/runner/worker"
)

// The main thread stays the main goroutine's. A goroutine that joins
// another network namespace locks its thread and ends with it; were that
// thread the main one, the runtime would wedge it there instead (it cannot
// end a process's main thread), and /proc/self and /proc/net, which show
// the main thread's namespace, would show the other one: a --netns run's
// sysctls journaled as the host's (Debian 6.1 in the VM tier, 2026-12-06).
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 1 && os.Args[1] == worker.Arg {
		os.Exit(worker.Main())
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}
