package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// boot is one kernel booted once: a stock host, or the limited one.
type boot struct {
	kernel kernel
	pass   string
}

func (b boot) column() string {
	c := b.kernel.Series
	if b.pass != "stock" {
		c += " " + b.pass
	}
	return c
}

func hostMain(ctx context.Context, args []string) int {
	f, err := parseHostFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 2
	}
	for _, tool := range []string{"qemu-system-x86_64", "busybox", "mkfs.ext4", "apt-get", "dpkg-deb", "xz", "ldd", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "vmtest: %s is missing (apt-get install qemu-system-x86 busybox-static e2fsprogs xz-utils)\n", tool)
			return 2
		}
	}
	if f.work == "" {
		if f.work, err = os.MkdirTemp("", "c10mprobe-vmtest"); err != nil {
			fmt.Fprintln(os.Stderr, "vmtest:", err)
			return 1
		}
		defer os.RemoveAll(f.work)
	}
	boots, root, err := prepareBoots(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 1
	}
	accel := accelerator(f.kvm)
	results := runBoots(ctx, f, boots, root, accel)
	if err := report(f, boots, results, accel); err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 1
	}
	failed := false
	for _, r := range results {
		failed = failed || r.Status == statusFail
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// prepareBoots fetches each series' kernel, lists the boots (stock, and
// limited for one series) and builds the binaries into the guest's root.
func prepareBoots(f hostFlags) (boots []boot, root string, err error) {
	for _, s := range f.series {
		k, err := fetchKernel(s, f.cache)
		if err != nil {
			return nil, "", err
		}
		fmt.Printf("kernel %s: %s %s (uname -r %s)\n", s, k.Package, k.Version, k.Release)
		if !f.noStock {
			boots = append(boots, boot{k, "stock"})
		}
		if s == f.limited {
			boots = append(boots, boot{k, "limited"})
		}
	}
	root = filepath.Join(f.work, "root")
	fmt.Println("building the binaries (CGO_ENABLED=0)")
	for _, d := range []string{"bin", "tests"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, "", err
		}
	}
	return boots, root, buildBinaries(root)
}

// report prints the table, and writes it as markdown to --table.
func report(f hostFlags, boots []boot, results []result, accel accel) error {
	var cols []string
	for _, b := range boots {
		cols = append(cols, b.column())
	}
	t := makeTable(cols, results)
	fmt.Print(t.text())
	if f.table == "" {
		return nil
	}
	var kernels []string
	for _, b := range boots {
		if b.pass == "stock" {
			kernels = append(kernels, fmt.Sprintf("%s %s (uname -r %s)", b.kernel.Package, b.kernel.Version, b.kernel.Release))
		}
	}
	return os.WriteFile(f.table, []byte(t.markdown(kernels, accel, f)), 0o644)
}

// accel is how qemu runs the guests: "tcg", or "kvm" with the -cpu model
// that the host's KVM accepted.
type accel struct {
	name, cpu string
}

func (a accel) String() string {
	if a.cpu == "" {
		return strings.ToUpper(a.name)
	}
	return strings.ToUpper(a.name) + " (-cpu " + a.cpu + ")"
}

// kvmCPUs are the -cpu models tried under KVM, in order. Under a hypervisor
// that does not let its guests set IA32_ARCH_CAPABILITIES (MSR 0x10a),
// "host" aborts at the first vCPU reset ("failed to set MSR 0x10a",
// kvm_buf_set_msrs), and so does "max"; the same model without that
// feature starts.
var kvmCPUs = []string{"host", "host,-arch-capabilities"}

// accelerator is TCG unless --kvm asks for KVM and qemu can start a vCPU
// with one of kvmCPUs. Not KVM by default: on this project's 2-CPU VM host
// /dev/kvm opened on 2026-12-06, and both Debian guests died in their
// first seconds under it ("KVM internal error ... emulation failure" on a
// BMI2 shrx and a cmpxchg16b), after which the tier would wait out its
// timeout; the tier's timings are TCG's.
func accelerator(want bool) accel {
	if !want {
		return accel{name: "tcg"}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return accel{name: "tcg"}
	}
	f.Close()
	for _, cpu := range kvmCPUs {
		if kvmStarts(cpu) {
			return accel{name: "kvm", cpu: cpu}
		}
	}
	return accel{name: "tcg"}
}

// kvmStarts says whether qemu, under KVM with this -cpu model, is still
// running two seconds after it was started paused (its vCPUs are made
// and reset before it waits).
func kvmStarts(cpu string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "kvm", "-cpu", cpu, "-m", "128",
		"-display", "none", "-monitor", "none", "-nodefaults", "-S")
	err := cmd.Run()
	return ctx.Err() != nil && err != nil // killed at the deadline, not exited by itself
}

// qemuArgs boot the kernel on the image, its console and its results on
// two serial ports.
func (b boot) qemuArgs(f hostFlags, image, console, results string, accel accel) []string {
	qargs := []string{"-machine", "q35", "-smp", fmt.Sprint(f.cpus), "-m", f.memory,
		"-kernel", b.kernel.vmlinuz(),
		"-append", "root=/dev/nvme0n1 rw rootfstype=ext4 init=/init console=ttyS0 panic=-1 quiet vmtest.pass=" + b.pass,
		"-drive", "file=" + image + ",if=none,id=disk,format=raw", "-device", "nvme,drive=disk,serial=vmtest",
		"-display", "none", "-monitor", "none", "-serial", "file:" + console, "-serial", "file:" + results,
		"-no-reboot", "-nic", "none"}
	if accel.name == "kvm" {
		return append(qargs, "-accel", "kvm", "-cpu", accel.cpu)
	}
	return append(qargs, "-accel", "tcg,thread="+f.tcgThreads, "-cpu", "max")
}

// runBoots boots up to --parallel guests at once, in the order given, and
// returns their rows in that order. Under TCG with one host thread a
// guest (thread=single), each guest keeps one host CPU busy: two at once
// on a 2-CPU host take the time of the longer.
func runBoots(ctx context.Context, f hostFlags, boots []boot, root string, accel accel) []result {
	rows := make([][]result, len(boots))
	next := make(chan int, len(boots))
	for i := range boots {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range max(1, f.parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if ctx.Err() != nil {
					return
				}
				b := boots[i]
				rs, err := b.run(ctx, f, root, accel)
				if err != nil {
					fmt.Fprintf(os.Stderr, "vmtest: %s: %v\n", b.column(), err)
					rs = append(rs, result{Kernel: b.column(), Item: "boot", Status: statusFail, Reason: err.Error()})
				}
				rows[i] = rs
			}
		}()
	}
	wg.Wait()
	var out []result
	for _, rs := range rows {
		out = append(out, rs...)
	}
	return out
}

// staging guards the guest's root directory, which each boot stages and
// copies into its own image before it boots.
var staging sync.Mutex

// image stages the guest for this boot and makes its disk image; it
// returns the plan's held-back tests as rows.
func (b boot) image(f hostFlags, root string) (string, []result, error) {
	staging.Lock()
	defer staging.Unlock()
	p, err := makePlan(b.kernel, b.pass, f.only, f.pressure)
	if err != nil {
		return "", nil, err
	}
	if err := os.RemoveAll(filepath.Join(root, "lib", "vmtest")); err != nil {
		return "", nil, err
	}
	os.RemoveAll(filepath.Join(root, "vmtest"))
	if err := stage(root, b.kernel, p); err != nil {
		return "", nil, fmt.Errorf("staging the guest: %w", err)
	}
	image := filepath.Join(f.work, b.name()+".img")
	// Room for run directories and swapfiles; sparse, so only what is written is used.
	return image, p.Held, makeImage(root, image, "8G")
}

func (b boot) name() string { return strings.ReplaceAll(b.column(), " ", "-") }

// run stages the guest, boots it and collects its rows as they come.
func (b boot) run(ctx context.Context, f hostFlags, root string, accel accel) ([]result, error) {
	image, held, err := b.image(f, root)
	if image != "" {
		defer os.Remove(image)
	}
	if err != nil {
		return nil, err
	}
	name := b.name()
	console, results := filepath.Join(f.work, name+".console"), filepath.Join(f.work, name+".results")
	os.WriteFile(results, nil, 0o644)
	qargs := b.qemuArgs(f, image, console, results, accel)
	fmt.Printf("\n== %s: booting %s under %s\n", b.column(), b.kernel.Release, accel)
	bctx, cancel := context.WithTimeout(ctx, time.Duration(f.timeout)*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(bctx, "qemu-system-x86_64", qargs...)
	out, err := os.Create(console + ".qemu")
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var rows []result
	for _, r := range held {
		r.Kernel, r.Pass = b.column(), b.pass
		fmt.Printf("%-6s %7.1fs  %-11s %s%s\n", r.Status, r.Seconds, "["+b.column()+"]", r.Item, suffix(r.Reason))
		rows = append(rows, r)
	}
	finished := false
	var offset int64
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-poll.C:
		}
		var got []result
		got, offset = readResults(results, offset)
		for _, r := range got {
			if r.Done {
				finished = true
				continue
			}
			r.Kernel, r.Pass = b.column(), b.pass
			fmt.Printf("%-6s %7.1fs  %-11s %s%s\n", r.Status, r.Seconds, "["+b.column()+"]", r.Item, suffix(r.Reason))
			if r.Status == statusFail && r.Output != "" {
				fmt.Println(indent(r.Output))
			}
			rows = append(rows, r)
		}
	}
	fmt.Printf("== %s: %s in %.0f s\n", b.column(), map[bool]string{true: "finished", false: "did not finish"}[finished], time.Since(start).Seconds())
	if !finished {
		con, _ := os.ReadFile(console)
		return rows, fmt.Errorf("the guest stopped before its last result (qemu: %v); console:\n%s", err, indent(tail(string(con), 40)))
	}
	return rows, nil
}

// readResults reads the complete lines past offset.
func readResults(path string, offset int64) ([]result, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset
	}
	defer f.Close()
	f.Seek(offset, 0)
	var out []result
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return out, offset
		}
		offset += int64(len(line))
		var res result
		// The serial line may carry a stray byte at boot; a line that is
		// not JSON is skipped.
		if i := strings.IndexByte(string(line), '{'); i >= 0 && json.Unmarshal(line[i:], &res) == nil {
			out = append(out, res)
		}
	}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func indent(s string) string {
	return "        " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n        ")
}
