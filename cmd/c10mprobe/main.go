package main

import (
	"os"

	"github.com/c10mprobe/c10mprobe/runner"
)

func main() {
	if code, ok := runner.Subprocess(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}
