package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

// Every flag of run, serve and dial is in record.Flags, which says where
// summary.json keeps it and either how compare shows it or why it does not
// change the result: a new flag cannot go unlisted. Each key names a field
// of summary.json.
func TestEveryRunFlagIsInTheSettingsTable(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var v flagVars
	v.define(fs, "127.0.0.1:9999")
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	byName := map[string]record.Flag{}
	for _, f := range record.Flags {
		if _, dup := byName[f.Name]; dup {
			t.Errorf("--%s is in record.Flags twice", f.Name)
		}
		byName[f.Name] = f
		if !slices.Contains(names, f.Name) {
			t.Errorf("record.Flags has --%s, which run does not define", f.Name)
		}
		if (f.Show == nil) == (f.Why == "") {
			t.Errorf("--%s: give either Show (it changes the result) or Why (it does not)", f.Name)
		}
		if f.Key != "" && !hasJSONPath(reflect.TypeOf(record.Summary{}), strings.Split(f.Key, ".")) {
			t.Errorf("--%s: summary.json has no %s", f.Name, f.Key)
		}
	}
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			t.Errorf("--%s is not in record.Flags: say where summary.json keeps it and whether compare shows it", n)
		}
	}
	if !hasJSONPath(reflect.TypeOf(runner.Result{}), []string{"settings", "rate"}) || hasJSONPath(reflect.TypeOf(runner.Result{}), []string{"settings", "no_such"}) {
		t.Error("hasJSONPath does not tell a key from none")
	}
}

// hasJSONPath says whether a JSON encoding of t has the path of keys.
func hasJSONPath(t reflect.Type, path []string) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if len(path) == 0 {
		return true
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			if hasJSONPath(f.Type, path) {
				return true
			}
			continue
		}
		if name == path[0] {
			return hasJSONPath(f.Type, path[1:])
		}
	}
	return false
}
