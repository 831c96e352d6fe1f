package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// kernel is one Debian kernel package, unpacked.
type kernel struct {
	Series  string // "6.1"
	Package string // linux-image-6.1.0-57-cloud-amd64-unsigned
	Version string // the package's Debian version, 6.1.192-3
	Release string // uname -r: 6.1.0-57-cloud-amd64
	Root    string // where the package is unpacked
}

func (k kernel) vmlinuz() string { return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release) }
func (k kernel) modules() string { return filepath.Join(k.Root, "lib", "modules", k.Release) }

// newestPackage asks apt for the cloud-amd64 image packages of a series and
// returns the newest name. Debian names them by ABI (6.1.0-57) or by
// upstream version (6.12.118+deb12); either sorts by its numbers.
func newestPackage(series string) (string, error) {
	pat := "^linux-image-" + regexp.QuoteMeta(series) + `\.[0-9][^ ]*-cloud-amd64-unsigned$`
	out, err := exec.Command("apt-cache", "search", "--names-only", pat).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache search %s: %w", pat, err)
	}
	var best string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if name != "" && (best == "" || versionLess(best, name)) {
			best = name
		}
	}
	if best == "" {
		return "", fmt.Errorf("apt knows no package matching %s (run apt-get update)", pat)
	}
	return best, nil
}

var digits = regexp.MustCompile(`[0-9]+`)

// versionLess compares two names by their runs of digits, left to right.
func versionLess(a, b string) bool {
	na, nb := digits.FindAllString(a, -1), digits.FindAllString(b, -1)
	for i := 0; i < len(na) && i < len(nb); i++ {
		x, _ := strconv.Atoi(na[i])
		y, _ := strconv.Atoi(nb[i])
		if x != y {
			return x < y
		}
	}
	return len(na) < len(nb)
}

// fetchKernel downloads (once) and unpacks the newest kernel of a series.
func fetchKernel(series, cache string) (kernel, error) {
	name, err := newestPackage(series)
	if err != nil {
		return kernel{}, err
	}
	k := kernel{Series: series, Package: name, Root: filepath.Join(cache, name)}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return k, err
	}
	debs, _ := filepath.Glob(filepath.Join(cache, name+"_*.deb"))
	if len(debs) == 0 {
		cmd := exec.Command("apt-get", "download", name)
		cmd.Dir = cache
		if out, err := cmd.CombinedOutput(); err != nil {
			return k, fmt.Errorf("apt-get download %s: %w\n%s", name, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(cache, name+"_*.deb"))
		if len(debs) == 0 {
			return k, fmt.Errorf("apt-get download %s left no .deb in %s", name, cache)
		}
	}
	if _, err := os.Stat(filepath.Join(k.Root, "boot")); err != nil {
		if out, err := exec.Command("dpkg-deb", "-x", debs[0], k.Root).CombinedOutput(); err != nil {
			return k, fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
		}
	}
	out, err := exec.Command("dpkg-deb", "-f", debs[0], "Version").Output()
	if err != nil {
		return k, fmt.Errorf("reading the version of %s: %w", debs[0], err)
	}
	k.Version = strings.TrimSpace(string(out))
	images, _ := filepath.Glob(filepath.Join(k.Root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return k, fmt.Errorf("%s holds %d kernel images, want 1", name, len(images))
	}
	k.Release = strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	// The package leaves modules.dep to depmod at install.
	if !exists(filepath.Join(k.modules(), "modules.dep")) {
		if out, err := exec.Command("busybox", "depmod", "-b", k.Root, k.Release).CombinedOutput(); err != nil {
			return k, fmt.Errorf("busybox depmod -b %s %s: %w\n%s", k.Root, k.Release, err, out)
		}
	}
	return k, nil
}

// moduleFiles resolves names (inet_diag, veth, …) and what they depend on
// through modules.dep, in load order: dependencies first.
func moduleFiles(k kernel, names []string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(k.modules(), "modules.dep"))
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{} // path → its dependencies' paths
	byName := map[string]string{} // module name → path
	for _, line := range strings.Split(string(data), "\n") {
		path, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[path] = strings.Fields(rest)
		byName[moduleName(path)] = path
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, d := range deps[p] {
			visit(d)
		}
		order = append(order, p)
	}
	for _, n := range names {
		p, ok := byName[n]
		if !ok {
			// Built into this kernel: nothing to load.
			if builtin(k, n) {
				continue
			}
			return nil, fmt.Errorf("%s: no module %s", k.Release, n)
		}
		visit(p)
	}
	return order, nil
}

func moduleName(path string) string {
	base := filepath.Base(path)
	base, _, _ = strings.Cut(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

func builtin(k kernel, name string) bool {
	data, _ := os.ReadFile(filepath.Join(k.modules(), "modules.builtin"))
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && moduleName(line) == name {
			return true
		}
	}
	return false
}
