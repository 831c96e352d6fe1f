package main

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// The guest's layout. Its root is the ext4 image itself.
const (
	guestBin     = "/bin"        // busybox, host tools, c10mprobe and the test servers
	guestTests   = "/tests"      // the go test -c binaries
	guestSrc     = "/src"        // each tested package's directory, testdata included
	guestModules = "/lib/vmtest" // the modules /init loads, in order
	guestPlan    = "/vmtest/plan.json"
	guestLogs    = "/vmtest/logs" // every item's whole output, read back on failure
	guestResults = "/dev/ttyS1"   // one JSON line a result
)

// hostTools are copied from the host with the shared libraries they load:
// busybox has no `ip netns`, no `ss`, no `nft`, and its setpriv cannot drop
// from the bounding set, which the limited pass needs.
var hostTools = []string{"ip", "ss", "nft", "setpriv"}

// guestModulesWanted are loaded at boot: what a stock system autoloads
// through modprobe (sock_diag for TCP, veth for the namespace tests,
// conntrack and nftables for the conntrack test).
var guestModulesWanted = []string{"inet_diag", "tcp_diag", "veth", "nf_conntrack", "nf_tables", "nft_ct"}

// testPackage is one test binary the guest runs, and which of its tests.
type testPackage struct {
	Name  string   // the binary, e.g. "cmd"
	Pkg   string   // ./cmd/c10mprobe
	Files []string // run only the tests declared in these files; all when empty
	// LimitedFiles are those the limited host runs, where they differ:
	// the tests whose outcome depends on the fd limit and the port range.
	LimitedFiles []string
}

// guestTestPackages: the root tests of bpf, runner and its worker, memmodel,
// sysctl, nshop (namespace hops), live, and of
// cmd the limits, signals, restore, netns, memory cap, servers and headroom tests (the
// servers other than the Go one need tools the guest lacks and skip). The
// machine tests (machine_test.go) run with --memory-pressure only: under
// TCG a run driven into swap by --machine-mem had not finished after five
// minutes, longer than the tier's budget allows (see pressureFiles).
var guestTestPackages = []testPackage{
	{Name: "bpf", Pkg: "./bpf"},
	{Name: "runner", Pkg: "./runner"},
	{Name: "worker", Pkg: "./runner/worker"},
	{Name: "memmodel", Pkg: "./internal/memmodel"},
	{Name: "sysctl", Pkg: "./internal/sysctl"},
	{Name: "nshop", Pkg: "./internal/nshop"},
	{Name: "live", Pkg: "./internal/live"},
	{Name: "cmd", Pkg: "./cmd/c10mprobe", Files: []string{"limits_test.go", "signals_test.go", "netns_test.go", "servers_test.go", "headroom_test.go"},
		LimitedFiles: []string{"limits_test.go", "servers_test.go"}},
}

// pressureFiles are the cmd tests --memory-pressure adds.
var pressureFiles = []string{"machine_test.go"}

// stage lays out the guest's root in dir.
func stage(dir string, k kernel, p plan) error {
	for _, d := range []string{"bin", "tests", "src", "lib/vmtest", "vmtest/logs", "etc", "proc", "sys", "dev", "run", "tmp", "root", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	if err := stageBusybox(dir); err != nil {
		return err
	}
	for _, t := range hostTools {
		if err := copyWithLibs(dir, t); err != nil {
			return err
		}
	}
	if err := stageModules(dir, k); err != nil {
		return err
	}
	files := map[string]string{
		"init":       initScript,
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, guestPlan), data, 0o644)
}

// initScript is the guest's PID 1: mount what a booted system has (cgroup
// v2 alone, as systemd hosts have it; tracefs left unmounted, as at boot),
// load the modules, bring up loopback, and run the plan with the fd limits
// systemd gives a service. The limited pass
// lowers the hard RLIMIT_NOFILE and drops CAP_SYS_RESOURCE from the
// bounding set first, so that nothing started under it can raise the limit.
const initScript = `#!/bin/sh
export PATH=/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The memory controller for the root's children, as systemd enables it at
# boot. No memory cgroup is made here: a test's is the first, and the kernel
# turns kmem accounting's static key on as it is made, patching code that
# other vCPUs run (under multi-threaded TCG Debian's 6.12 oopsed there).
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
for m in $(cat /lib/vmtest/order); do insmod /lib/vmtest/$m || echo "vmtest: insmod $m failed"; done
# Paths, not names, for the host's tools: busybox's shell runs its own
# applet of a name (ip, setpriv) before anything on PATH.
/bin/ip link set lo up
# ip netns mounts a tmpfs on /run/netns the first time it is used, and
# leaves it: as on a host where namespaces have been made before.
/bin/ip netns add vmtest-boot && /bin/ip netns del vmtest-boot
hostname vmtest
pass=stock
for a in $(cat /proc/cmdline); do case $a in vmtest.pass=*) pass=${a#vmtest.pass=};; esac; done
if [ "$pass" = limited ]; then
	echo "20000 50000" > /proc/sys/net/ipv4/ip_local_port_range
	ulimit -n 15000
	/bin/setpriv --bounding-set=-sys_resource --inh-caps=-sys_resource /bin/vmtest guest $pass
else
	# As systemd starts services (DefaultLimitNOFILE=1024:524288): root
	# may raise the hard limit further, up to fs.nr_open.
	ulimit -H -n 524288
	ulimit -S -n 1024
	/bin/vmtest guest $pass
fi
sync
poweroff -f
`

func stageBusybox(dir string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	f, err := elf.Open(bb)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is linked dynamically; the guest needs busybox-static", bb)
		}
	}
	if err := copyFile(bb, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		link := filepath.Join(dir, "bin", applet)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink("busybox", link); err != nil {
			return err
		}
	}
	return nil
}

var lddLine = regexp.MustCompile(`(?:=> )?(/\S+) \(0x`)

// copyWithLibs copies a host program into the guest's /bin, replacing any
// busybox applet of that name, and the shared libraries ldd lists at their
// own paths.
func copyWithLibs(dir, tool string) error {
	path, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("%s: %w", tool, err)
	}
	dst := filepath.Join(dir, "bin", tool)
	os.Remove(dst)
	if err := copyFile(path, dst, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", path, err)
	}
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		lib := m[1]
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(lib)), 0o755); err != nil {
			return err
		}
		if err := copyFile(lib, filepath.Join(dir, lib), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// stageModules copies the wanted modules and their dependencies,
// decompressed (busybox insmod reads plain ELF), and their load order.
func stageModules(dir string, k kernel) error {
	files, err := moduleFiles(k, guestModulesWanted)
	if err != nil {
		return err
	}
	var order []string
	for _, f := range files {
		src := filepath.Join(k.modules(), f)
		name := filepath.Base(f)
		dst := filepath.Join(dir, guestModules, strings.TrimSuffix(name, ".xz"))
		if strings.HasSuffix(name, ".xz") {
			out, err := exec.Command("xz", "-dc", src).Output()
			if err != nil {
				return fmt.Errorf("xz -dc %s: %w", src, err)
			}
			err = os.WriteFile(dst, out, 0o644)
			if err != nil {
				return err
			}
		} else if err := copyFile(src, dst, 0o644); err != nil {
			return err
		}
		order = append(order, filepath.Base(dst))
	}
	return os.WriteFile(filepath.Join(dir, guestModules, "order"), []byte(strings.Join(order, "\n")+"\n"), 0o644)
}

// buildBinaries builds what the guest runs, statically (CGO_ENABLED=0): the
// tool and its worker, the test servers, the test binaries, test2json, and
// this program for the guest side.
func buildBinaries(dir string) error {
	env := append(os.Environ(), "CGO_ENABLED=0")
	gobuild := func(args ...string) error {
		cmd := exec.Command("go", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	bin := filepath.Join(dir, "bin")
	for _, b := range [][2]string{
		{"c10mprobe", "./cmd/c10mprobe"}, {"c10mprobe-worker", "./cmd/c10mprobe-worker"},
		{"goecho", "./cmd/c10mprobe/testdata/servers/goecho"}, {"vmtest", "./internal/vmtest"},
		{"test2json", "cmd/test2json"},
	} {
		if err := gobuild("build", "-o", filepath.Join(bin, b[0]), b[1]); err != nil {
			return err
		}
	}
	for _, t := range guestTestPackages {
		if err := gobuild("test", "-c", "-o", filepath.Join(dir, "tests", t.Name+".test"), t.Pkg); err != nil {
			return err
		}
		// Tests read their testdata (and bpf's its objects) relative to the
		// package directory.
		src := filepath.Join(dir, "src", t.Name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		objs, _ := filepath.Glob(filepath.Join(t.Pkg, "*.o"))
		for _, o := range objs {
			if err := copyFile(o, filepath.Join(src, filepath.Base(o)), 0o644); err != nil {
				return err
			}
		}
		if td := filepath.Join(t.Pkg, "testdata"); exists(td) {
			if out, err := exec.Command("cp", "-r", td, src).CombinedOutput(); err != nil {
				return fmt.Errorf("copying %s: %w\n%s", td, err, out)
			}
		}
	}
	return nil
}

// makeImage writes an ext4 image of size holding dir as its root.
func makeImage(dir, image, size string) error {
	os.Remove(image)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "vmtest", "-E", "root_owner=0:0", "-d", dir, image, size).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 -d: %w\n%s", err, out)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

var testDecl = regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]*)\(t \*testing\.T\)`)

// testsIn lists the Test functions declared in a package's files.
func testsIn(pkg string, files []string) ([]string, error) {
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(pkg, f))
		if err != nil {
			return nil, err
		}
		for _, m := range testDecl.FindAllSubmatch(data, -1) {
			names = append(names, string(m[1]))
		}
	}
	return names, nil
}
