package main

import (
	"fmt"
	"io"
	"os"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/spf13/pflag"
)

func compareCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("compare", pflag.ContinueOnError)
	htmlOut := fs.String("html", "", "also write the comparison as an HTML page to this file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, stdout, "  c10mprobe compare runs/a runs/b --html compare.html\n"); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return badInput("give two or more run directories")
	}
	var runs []analysis.Compared
	for _, dir := range fs.Args() {
		run, err := loadRun(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		runs = append(runs, run.Compared(dir))
	}
	c := analysis.Compare(runs)
	if *htmlOut != "" {
		f, err := os.Create(*htmlOut)
		if err == nil {
			err = analysis.WriteComparisonHTML(f, c)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("writing %s: %v", *htmlOut, err)
		}
	}
	if *asJSON {
		return record.WriteJSONTo(stdout, c)
	}
	analysis.WriteComparisonText(stdout, c)
	return nil
}
