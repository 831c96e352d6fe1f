// Command c10mprobe-worker is the runner's worker process alone: c10mprobe
// starts it, when it lies beside c10mprobe, instead of re-executing itself,
// so that each of a run's hundreds of workers carries no exporter, eBPF
// loader or template code, and none of their package initialization.
package main

import (
	"os"

	"github.com/c10mprobe/c10mprobe/runner/worker"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == worker.Arg {
		os.Exit(worker.Main())
	}
	os.Stderr.WriteString("c10mprobe-worker is started by c10mprobe run, not by hand\n")
	os.Exit(2)
}
