// Command skipreport reads the test events gotestsum saved (--jsonfile, the
// go test -json stream) and prints every skip with its reason and a count
// of skips per package and reason. It fails when a skip gives no reason of
// testenv's list, so that a test cannot skip silently or for a reason
// nobody reviewed. Its last line is the plain "N passed, N failed, N
// skipped" that CI reads.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/testenv"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: skipreport FILE (gotestsum --jsonfile)")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipreport:", err)
		os.Exit(2)
	}
	defer f.Close()
	output := map[string][]string{} // package/test → its output lines
	count := map[string]int{}       // action → tests
	type skip struct{ pkg, test, reason string }
	var skips []skip
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
		case "pass", "fail", "skip":
			count[e.Action]++
			if e.Action == "skip" {
				msg, _ := testenv.SkipMessage(output[key])
				skips = append(skips, skip{e.Package, e.Test, msg})
			}
		}
	}
	pkgCounts := map[string]map[string]int{}
	unlisted := 0
	for _, s := range skips {
		r := "unlisted"
		for _, l := range testenv.Reasons {
			if strings.HasPrefix(s.reason, "["+string(l)+"]") {
				r = string(l)
			}
		}
		if r == "unlisted" {
			unlisted++
		}
		if pkgCounts[s.pkg] == nil {
			pkgCounts[s.pkg] = map[string]int{}
		}
		pkgCounts[s.pkg][r]++
		fmt.Printf("skip  %s %s: %s\n", s.pkg, s.test, s.reason)
	}
	var pkgs []string
	for p := range pkgCounts {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	if len(pkgs) > 0 {
		fmt.Println("\nskips by package:")
	}
	for _, p := range pkgs {
		var parts []string
		n := 0
		for r, c := range pkgCounts[p] {
			parts = append(parts, fmt.Sprintf("%d %s", c, r))
			n += c
		}
		sort.Strings(parts)
		fmt.Printf("  %-50s %3d  (%s)\n", p, n, strings.Join(parts, ", "))
	}
	if unlisted > 0 {
		fmt.Printf("\n%d skips give no reason of testenv's list (use testenv.Skip)\n", unlisted)
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", count["pass"], count["fail"]+unlisted, count["skip"])
	if count["fail"] > 0 || unlisted > 0 {
		os.Exit(1)
	}
}
