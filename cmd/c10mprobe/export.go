package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/c10mprobe/c10mprobe/record"
	"github.com/spf13/pflag"
)

func exportCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("export", pflag.ContinueOnError)
	formats := fs.StringSlice("format", record.Formats, "formats to write: "+strings.Join(record.Formats, ", "))
	if err := parseFlags(fs, args, stdout, "  c10mprobe export runs/20261125T190102Z --format html,svg\n"); err != nil {
		return err
	}
	dir, err := oneRunDir(fs)
	if err != nil {
		return err
	}
	if len(*formats) == 0 {
		return badInput("--format names no format (want some of %s)", strings.Join(record.Formats, ", "))
	}
	for _, f := range *formats {
		if !record.IsFormat(f) {
			return badInput("unknown format %q (want %s)", f, strings.Join(record.Formats, ", "))
		}
	}
	run, err := loadRun(dir)
	if err != nil {
		return err
	}
	written, skipped, err := run.Export(dir, *formats)
	for _, path := range written {
		fmt.Fprintln(stdout, path)
	}
	for _, name := range slices.Sorted(maps.Keys(skipped)) {
		fmt.Fprintf(stderr, "skipped %s: %s\n", name, skipped[name])
	}
	return err
}
