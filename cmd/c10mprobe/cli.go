package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/buildinfo"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// versionString is version, or for a plain go build the commit Go stamped
// into the binary, so that a report names the code that made it.
func versionString() string { return buildinfo.Version(version) }

// Exit codes.
const (
	exitOK       = 0
	exitNotAll   = 1 // the run could not verify every connection, or a command failed
	exitBadInput = 2
)

// exitError ends a command with its exit code; cli prints its message, if
// any, once.
type exitError struct {
	code int
	err  error // nil: the command has said all there is to say
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// badInput is input a command cannot run with: one sentence, exit 2.
func badInput(format string, a ...any) error {
	return &exitError{exitBadInput, fmt.Errorf(format, a...)}
}

// errNotAll ends a run that did not verify every connection; its summary
// has said so.
var errNotAll = &exitError{code: exitNotAll}

// errHelp ends a command that printed its help.
var errHelp = &exitError{code: exitOK}

// exitCode is the exit code for a command's error, printing it once.
func exitCode(name string, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code := exitNotAll
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
		if ee.err == nil {
			return code
		}
	case runner.IsBadInput(err):
		code = exitBadInput
	}
	fmt.Fprintf(stderr, "c10mprobe %s: %v\n", name, err)
	return code
}

type subcommand struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func subcommands() []subcommand {
	return []subcommand{
		{"run", "open N connections to one server port, verify each, explain the cost", runCmd},
		{"serve", "the built-in server alone, for dialers on other hosts: verify N, explain the cost here", serveCmd},
		{"dial", "open a share of N connections to a serve on another host, answer its exchange, hold", dialCmd},
		{"k8s", "print Kubernetes manifests: serve as a Pod and Service, dialers as an Indexed Job", k8sCmd},
		{"restore", "undo the sysctl changes of a run that was killed (restore RUNDIR)", restoreCmd},
		{"explain", "explain a recorded run again: the ledger, the limits, the verdict (explain RUNDIR)", explainCmd},
		{"export", "render a run's files again: csv, json, folded, pprof, svg, html (export RUNDIR)", exportCmd},
		{"compare", "runs side by side: connections, rates, bytes per connection by kind, limits (compare A B ...)", compareCmd},
		{"headroom", "how many more connections a running server takes, and what runs out first: read, not opened", headroomCmd},
		{"predict", "how many connections a machine of a given size holds, and what gives first", predictCmd},
		{"doctor", "what this kernel allows: BTF, lockdown, tracefs, which probe backends attach, the limits", doctorCmd},
	}
}

func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitBadInput
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	case "--version", "version":
		fmt.Fprintln(stdout, "c10mprobe", versionString())
		return exitOK
	}
	for _, c := range subcommands() {
		if c.name == args[0] {
			return exitCode(c.name, c.run(args[1:], stdout, stderr), stderr)
		}
	}
	fmt.Fprintf(stderr, "c10mprobe: unknown command %q; run 'c10mprobe --help' for the list\n", args[0])
	return exitBadInput
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "c10mprobe: how many connections can this machine really hold, and what runs out first?")
	fmt.Fprintln(w, "\nUsage: c10mprobe COMMAND [flags]\n\nCommands:")
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'c10mprobe COMMAND --help' for a command's flags and examples.")
}

// parseFlags parses args; after --help, or on bad input, it returns the
// error that ends the command.
func parseFlags(fs *pflag.FlagSet, args []string, stdout io.Writer, examples string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: c10mprobe %s [flags]\n\nFlags:\n%s\nExamples:\n%s", fs.Name(), fs.FlagUsages(), examples)
		return errHelp
	}
	if err != nil {
		return badInput("%s", strings.TrimSpace(err.Error()))
	}
	return nil
}

// oneRunDir is the one run directory a command takes.
func oneRunDir(fs *pflag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", badInput("give exactly one run directory")
	}
	return fs.Arg(0), nil
}
