// Package buildinfo names the code a binary was built from, so that what it
// writes can say which code made it.
package buildinfo

import "runtime/debug"

// Version is the version set at link time, or for a plain go build ("dev")
// the commit Go stamped into the binary, with +modified for a dirty tree.
func Version(version string) string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+modified"
			}
		}
	}
	if len(rev) >= 12 {
		return "dev-" + rev[:12] + dirty
	}
	return version
}
