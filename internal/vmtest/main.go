// Command vmtest is the VM test tier: it boots Debian's stock kernels under
// qemu and runs c10mprobe's root tests and user scenarios inside them, so
// that what the tool claims is checked on the kernels users run, not only on
// the machine it is developed on. Run it as `make vmtest` (root, for the
// test binaries' host-side build only; qemu itself needs no privilege).
//
// The host side downloads the newest cloud-amd64 build of each kernel
// series Debian serves, builds every binary with CGO_ENABLED=0, lays them
// out with busybox, a few host tools and the kernel's modules in an ext4
// image that becomes the guest's root (the disk is NVMe, which Debian's cloud
// kernels build in, so no initramfs is needed), boots it, and reads one JSON
// line a result from the guest's second serial port. The guest side
// (`vmtest guest`) runs the plan the host wrote into the image.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "guest" {
		os.Exit(guestMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(hostMain(ctx, os.Args[1:]))
}

// hostFlags are the host side's settings.
type hostFlags struct {
	series  []string // kernel series, e.g. 6.1 and 6.12
	limited string   // the series that also boots the limited host
	only    string   // run only items whose name matches
	table   string   // write the results as markdown here
	cache   string   // downloaded kernels
	work    string   // images and logs
	memory  string   // guest RAM, qemu -m syntax
	cpus    int
	// tcgThreads is qemu's TCG threading: single runs every vCPU on one
	// host thread. With multi, Debian's 6.12 oopsed at int3 sites the
	// kernel was patching (static keys) and once locked up for 775 s:
	// cross-modified code under multi-threaded TCG (docs/vmtest.md).
	tcgThreads string
	// kvm asks for KVM instead of TCG (accelerator says why not by default).
	kvm      bool
	parallel int // guests booted at once
	timeout  int // minutes a boot may take before it is killed
	// pressure adds what drives the guest into swap (--machine-mem).
	pressure bool
	noStock  bool // boot only the limited host
}

func parseHostFlags(args []string) (hostFlags, error) {
	var f hostFlags
	cache, _ := os.UserCacheDir()
	fs := pflag.NewFlagSet("vmtest", pflag.ContinueOnError)
	fs.StringSliceVar(&f.series, "kernels", []string{"6.1", "6.12"}, "Debian kernel series to boot (the newest cloud-amd64 build of each)")
	fs.StringVar(&f.limited, "limited", "6.12", "series that boots a second time as a limited host (hard RLIMIT_NOFILE 15,000 without CAP_SYS_RESOURCE, ports 20000–50000); empty for none")
	fs.StringVar(&f.only, "only", "", "run only the tests and scenarios whose name matches this regular expression")
	fs.StringVar(&f.table, "table", "", "also write the results table as markdown to this file")
	fs.StringVar(&f.cache, "cache", cache+"/c10mprobe-vmtest", "where downloaded kernels are kept")
	fs.StringVar(&f.work, "work", "", "where images and console logs go (default: a new temporary directory)")
	fs.StringVar(&f.memory, "memory", "4G", "guest memory")
	fs.IntVar(&f.cpus, "cpus", 2, "guest vCPUs")
	fs.StringVar(&f.tcgThreads, "tcg-threads", "single", "qemu's TCG threading: single (every vCPU on one host thread) or multi (a host thread per vCPU)")
	fs.IntVar(&f.parallel, "parallel", 2, "guests booted at once")
	fs.BoolVar(&f.kvm, "kvm", false, "boot under KVM (-cpu host, or host without arch-capabilities where qemu refuses host) instead of TCG, where /dev/kvm opens")
	fs.BoolVar(&f.noStock, "limited-only", false, "boot only the limited host (of the --limited series)")
	fs.BoolVar(&f.pressure, "memory-pressure", false, "also run the machine tests and --machine-mem scenarios, which drive the guest into swap (under TCG these had not finished after five minutes)")
	fs.IntVar(&f.timeout, "timeout", 30, "minutes a boot may run before it is killed and counted failed")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.tcgThreads != "single" && f.tcgThreads != "multi" {
		return f, fmt.Errorf("--tcg-threads %q: single or multi", f.tcgThreads)
	}
	if f.parallel < 1 {
		return f, fmt.Errorf("--parallel %d: at least 1", f.parallel)
	}
	return f, nil
}
