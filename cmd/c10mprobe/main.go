package main

import (
	"os"

	"github.com/c10mprobe/c10mprobe/runner/host"
	"github.com/c10mprobe/c10mprobe/runner/worker"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == worker.Arg {
		os.Exit(worker.Main())
	}
	if len(os.Args) > 2 && os.Args[1] == host.KeeperArg {
		os.Exit(host.KeepMachine(os.Args[2]))
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}
