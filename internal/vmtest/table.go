package main

import (
	"fmt"
	"strings"
	"time"
)

// table is kernel × item: one cell a boot's result for an item.
type table struct {
	cols  []string
	items []string
	cells map[string]map[string]result // item → column → result
}

func makeTable(cols []string, rs []result) table {
	t := table{cols: cols, cells: map[string]map[string]result{}}
	for _, r := range rs {
		if t.cells[r.Item] == nil {
			t.cells[r.Item] = map[string]result{}
			t.items = append(t.items, r.Item)
		}
		t.cells[r.Item][r.Kernel] = r
	}
	return t
}

func (t table) cell(item, col string) string {
	r, ok := t.cells[item][col]
	if !ok {
		return "–"
	}
	if r.Status == statusFail {
		return fmt.Sprintf("FAIL %.0fs", r.Seconds)
	}
	return fmt.Sprintf("%s %.0fs", r.Status, r.Seconds)
}

// notes say why each skip, xfail and failure happened, once per reason.
func (t table) notes() []string {
	var out []string
	for _, item := range t.items {
		byReason := map[string][]string{}
		var reasons []string
		for _, col := range t.cols {
			r, ok := t.cells[item][col]
			if !ok || r.Reason == "" || r.Status == statusPass {
				continue
			}
			key := r.Status + ": " + r.Reason
			if byReason[key] == nil {
				reasons = append(reasons, key)
			}
			byReason[key] = append(byReason[key], col)
		}
		for _, k := range reasons {
			out = append(out, fmt.Sprintf("%s (%s) %s", item, strings.Join(byReason[k], ", "), k))
		}
	}
	return out
}

func (t table) counts() string {
	n := map[string]int{}
	for _, item := range t.items {
		for _, r := range t.cells[item] {
			n[r.Status]++
		}
	}
	return fmt.Sprintf("%d passed, %d failed, %d skipped", n[statusPass], n[statusFail], n[statusSkip])
}

func (t table) xfails() int {
	n := 0
	for _, item := range t.items {
		for _, r := range t.cells[item] {
			if r.Status == statusXfail {
				n++
			}
		}
	}
	return n
}

func (t table) text() string {
	var b strings.Builder
	w := len("item")
	for _, i := range t.items {
		w = max(w, len(i))
	}
	fmt.Fprintf(&b, "\n%-*s", w, "item")
	for _, c := range t.cols {
		fmt.Fprintf(&b, "  %-14s", c)
	}
	b.WriteString("\n")
	for _, i := range t.items {
		fmt.Fprintf(&b, "%-*s", w, i)
		for _, c := range t.cols {
			fmt.Fprintf(&b, "  %-14s", t.cell(i, c))
		}
		b.WriteString("\n")
	}
	if notes := t.notes(); len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString(n + "\n")
		}
	}
	fmt.Fprintf(&b, "\n%d known failures (xfail), each naming the work that will fix it\n", t.xfails())
	b.WriteString("vmtest: " + t.counts() + "\n")
	return b.String()
}

func (t table) markdown(kernels []string, accel accel, f hostFlags) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The VM tier: c10mprobe on Debian's stock kernels\n\n")
	how := accel.String()
	if accel.name == "tcg" {
		how += " (thread=" + f.tcgThreads + ")"
	}
	fmt.Fprintf(&b, "Taken %s by `make vmtest` (`go run ./internal/vmtest`), qemu under %s, %d vCPUs, %s of memory, %d guests at once, cgroup v2 alone, root with every capability.\n",
		time.Now().UTC().Format("2006-01-02"), how, f.cpus, f.memory, f.parallel)
	fmt.Fprintf(&b, "Kernels:\n\n")
	for _, k := range kernels {
		fmt.Fprintf(&b, "- %s\n", k)
	}
	if accel.name == "tcg" && f.tcgThreads == "single" {
		fmt.Fprintf(&b, "\nEach guest's vCPUs share one host thread (`-accel tcg,thread=single`). With a thread per vCPU, Debian's 6.12 oopsed three times on an int3 at a site the kernel was patching (a static key turned on while another vCPU ran that code: kmem accounting as the first memory cgroup was made) and once stalled for 775 s (a soft lockup) until its boot was killed; one thread keeps code that one vCPU rewrites coherent for the other.\n")
	}
	if f.limited != "" {
		fmt.Fprintf(&b, "\nThe column \"%s limited\" is a second boot of that kernel as a different host: hard RLIMIT_NOFILE 15,000 without CAP_SYS_RESOURCE (dropped from the bounding set), and `ip_local_port_range 20000 50000`.\n", f.limited)
	}
	if !f.pressure {
		fmt.Fprintf(&b, "\nNot run here: the machine tests and the `--machine-mem` scenarios, which drive the guest into swap (`make vmtest VMTEST_FLAGS=--memory-pressure`). Under TCG (2026-12-07, at 4a46bd4), `run --conns 600000 --machine-mem 2GiB` passed in 369 s on 6.1 and 245 s on 6.12, and the same with `--swap 512MiB --ballast 256MiB` in 567 s and 291 s: longer than this tier's budget allows.\n")
	}
	fmt.Fprintf(&b, "\nEach cell is the result and its duration; a scenario passes only if the guest is as before (every writable sysctl, the cgroup tree, swaps, network namespaces, mounts, no c10mprobe process left). Rows `NAME: guest as before` check the same after each test binary.\n\n")
	fmt.Fprintf(&b, "| item | %s |\n|---|%s\n", strings.Join(t.cols, " | "), strings.Repeat("---|", len(t.cols)))
	for _, i := range t.items {
		var cells []string
		for _, c := range t.cols {
			cells = append(cells, t.cell(i, c))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", strings.ReplaceAll(i, "|", "\\|"), strings.Join(cells, " | "))
	}
	notes := t.notes()
	if len(notes) > 0 {
		b.WriteString("\nWhy:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\nTotal: %s, %d xfail.\n", t.counts(), t.xfails())
	return b.String()
}
