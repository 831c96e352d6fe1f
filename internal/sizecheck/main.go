// Command sizecheck holds the tree to the sizes that keep it readable:
// no Go file over 500 lines, no function over 80, no test file of 700 or
// more, cmd/c10mprobe under 1,200 lines, and no struct over 25 fields
// unless it is a schema (its fields carry json tags). Generated files are
// left out. `make lint` runs it; it prints each breach and exits 1.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	breaches, err := check(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sizecheck:", err)
		os.Exit(2)
	}
	for _, b := range breaches {
		fmt.Println(b)
	}
	if len(breaches) > 0 {
		os.Exit(1)
	}
}

// Limits.
const (
	maxFileLines     = 500
	maxFuncLines     = 80
	maxTestFileLines = 699
	maxCmdLines      = 1199
	maxFields        = 25
	cmdDir           = "cmd/c10mprobe"
)

// check walks root and returns every breach, one sentence each.
func check(root string) ([]string, error) {
	var out []string
	cmdLines := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		f, err := measure(rel, src)
		if err != nil || f.generated {
			return err
		}
		if !f.test && filepath.Dir(rel) == cmdDir {
			cmdLines += f.lines
		}
		out = append(out, f.breaches()...)
		return nil
	})
	if cmdLines > maxCmdLines {
		out = append(out, fmt.Sprintf("%s: %d lines outside tests, more than %d", cmdDir, cmdLines, maxCmdLines))
	}
	return out, err
}
