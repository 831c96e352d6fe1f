package main

import (
	"path/filepath"
	"regexp"
	"strings"
)

// plan is what the host writes into the image for the guest.
type plan struct {
	Kernel string `json:"kernel"` // the package, for the record
	Pass   string `json:"pass"`   // stock or limited
	Only   string `json:"only,omitempty"`
	// Pressure: the tests and scenarios that drive the guest into swap.
	Pressure bool        `json:"pressure,omitempty"`
	Tests    []testBatch `json:"tests"`
	// Held are the tests not run on this kernel, each with its reason: the
	// host reports them as skipped rows.
	Held []result `json:"-"`
}

// heldBack are tests not run on a kernel series until named work finds
// why they fail there: a row says so, with the issue, in every table.
var heldBack = map[string]map[string]string{}

// testBatch is one test binary's run: the tests it runs, in one process.
type testBatch struct {
	Name string `json:"name"` // bpf, runner, cmd
	Run  string `json:"run"`  // -test.run
}

// result is one row of the table: a test or a scenario on one boot.
type result struct {
	Kernel  string  `json:"kernel,omitempty"` // set by the host
	Pass    string  `json:"pass,omitempty"`   // set by the host
	Item    string  `json:"item"`
	Status  string  `json:"status"` // pass, fail, skip, xfail
	Seconds float64 `json:"seconds"`
	Reason  string  `json:"reason,omitempty"` // why it skipped, or what failed
	Output  string  `json:"output,omitempty"` // the end of a failure's output
	Done    bool    `json:"done,omitempty"`   // the guest's last line
}

const (
	statusPass  = "pass"
	statusFail  = "fail"
	statusSkip  = "skip"
	statusXfail = "xfail"
)

// makePlan selects the tests of each package for the guest.
func makePlan(k kernel, pass, only string, pressure bool) (plan, error) {
	p := plan{Kernel: k.Package + " " + k.Version, Pass: pass, Only: only, Pressure: pressure}
	for _, t := range guestTestPackages {
		files := t.Files
		if pass == "limited" && t.LimitedFiles != nil {
			files = t.LimitedFiles
		}
		if pressure && t.Name == "cmd" {
			files = append(append([]string{}, files...), pressureFiles...)
		}
		if len(files) == 0 {
			all, err := filepath.Glob(filepath.Join(t.Pkg, "*_test.go"))
			if err != nil {
				return p, err
			}
			for _, f := range all {
				files = append(files, filepath.Base(f))
			}
		}
		names, err := testsIn(t.Pkg, files)
		if err != nil {
			return p, err
		}
		var run []string
		for _, n := range names {
			item := t.Name + "/" + n
			if !p.selected(item) {
				continue
			}
			if why, held := heldBack[k.Series][item]; held {
				p.Held = append(p.Held, result{Item: item, Status: statusSkip, Reason: why})
				continue
			}
			run = append(run, n)
		}
		if len(run) > 0 {
			p.Tests = append(p.Tests, testBatch{Name: t.Name, Run: "^(" + strings.Join(run, "|") + ")$"})
		}
	}
	return p, nil
}

// selected reports whether an item's name passes --only.
func (p plan) selected(name string) bool {
	if p.Only == "" {
		return true
	}
	ok, _ := regexp.MatchString(p.Only, name)
	return ok
}
