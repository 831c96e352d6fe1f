package main

import (
	"os"

	"github.com/c10mprobe/c10mprobe/runner"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == runner.WorkerArg {
		os.Exit(runner.WorkerMain())
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}
