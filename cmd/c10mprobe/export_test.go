package main

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/rundir"
	"github.com/c10mprobe/c10mprobe/internal/testenv"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/google/pprof/profile"
)

func TestExportsOfARun(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	r := run(t, "--conns", "20000", "--listen", "127.0.0.1:19909", "--sysctl", "net.ipv4.tcp_rmem=4096 65536 1048576")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	assertSysctls(t, before) // --sysctl restored after success
	dir := r.dir

	var series []analysis.Sample
	readJSON(t, filepath.Join(dir, rundir.Timeseries), &series)
	rows := readCSV(t, filepath.Join(dir, "timeseries.csv"))
	if len(series) < 2 || len(rows) != len(series)+1 {
		t.Errorf("timeseries.csv has %d rows for %d samples", len(rows), len(series))
	}
	for i, h := range analysis.TimeseriesHeader {
		if rows[0][i] != h {
			t.Errorf("timeseries.csv column %d is %q, want %q", i, rows[0][i], h)
		}
	}
	if !strings.HasPrefix(rows[0][len(rows[0])-1], "cache_") {
		t.Errorf("no per-cache columns: %v", rows[0])
	}
	// The series holds every connection until the close, then follows the
	// close down to none open.
	held, last := rows[0], rows[len(rows)-1]
	for _, row := range rows[1:] {
		if row[1] != "close" {
			held = row
		}
	}
	if n, _ := strconv.Atoi(held[2]); n != 20000 || last[1] != "close" || last[2] != "0" {
		t.Errorf("the last sample before the close has %s established; the last, %s in %s", held[2], last[2], last[1])
	}

	s := readSummary(t, r)
	if ledger := readCSV(t, filepath.Join(dir, "ledger.csv")); len(ledger) != len(s.Explanation.Ledger)+1 {
		t.Errorf("ledger.csv has %d rows for %d ledger lines", len(ledger), len(s.Explanation.Ledger))
	}

	// The folded file and the pprof profile hold the same bytes.
	folded, err := os.ReadFile(filepath.Join(dir, "kernel-alloc.folded"))
	if err != nil {
		t.Fatal(err)
	}
	var foldedTotal int64
	for _, line := range strings.Split(strings.TrimSpace(string(folded)), "\n") {
		v, err := strconv.ParseInt(line[strings.LastIndex(line, " ")+1:], 10, 64)
		if err != nil {
			t.Fatalf("folded line %q: %v", line, err)
		}
		foldedTotal += v
	}
	f, err := os.Open(filepath.Join(dir, "kernel-alloc.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var profTotal int64
	for _, smp := range p.Sample {
		profTotal += smp.Value[0]
	}
	if foldedTotal == 0 || foldedTotal != profTotal {
		t.Errorf("folded total %d, pprof total %d", foldedTotal, profTotal)
	}
	if out, err := exec.Command("go", "tool", "pprof", "-top", filepath.Join(dir, "kernel-alloc.pb.gz")).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("alloc_space")) {
		t.Errorf("go tool pprof -top: %v\n%s", err, out)
	}
	// CPU samples of the run: the same checks, and both worlds in the stacks.
	if foldedSum(t, filepath.Join(dir, "cpu.folded")) != profileSum(t, filepath.Join(dir, "cpu.pb.gz")) {
		t.Error("cpu.folded and cpu.pb.gz disagree")
	}
	cpuFolded, _ := os.ReadFile(filepath.Join(dir, "cpu.folded"))
	if !bytes.Contains(cpuFolded, []byte("runner/worker.(*worker)")) || !bytes.Contains(cpuFolded, []byte("tcp_v4_")) {
		t.Errorf("CPU stacks lack the workers' Go frames or the kernel's TCP frames:\n%.600s", cpuFolded)
	}
	assertGoStacksRooted(t, string(cpuFolded), "c10mprobe", "c10mprobe-worker")
	if out, err := exec.Command("go", "tool", "pprof", "-top", filepath.Join(dir, "cpu.pb.gz")).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("Type: samples")) {
		t.Errorf("go tool pprof -top cpu.pb.gz: %v\n%s", err, out)
	}

	svg, err := os.ReadFile(filepath.Join(dir, "flamegraph.svg"))
	if err != nil {
		t.Fatal(err)
	}
	assertXML(t, svg)
	if !bytes.Contains(svg, []byte("<title>[TCP]")) {
		t.Error("the flamegraph has no [TCP] frame")
	}

	// Memory binds first here, or epoll watches (2 a connection: ≈ 2.74M)
	// when the run measures a connection at under ≈ 8 KiB.
	if b := s.Explanation.BindingLimit; b != "memory" && b != "epoll watches" {
		t.Errorf("binding limit %q", b)
	}
	t.Run("browser", func(t *testing.T) {
		assertReportRenders(t, filepath.Join(dir, "report.html"), s.Explanation.BindingLimit)
	})

	// export regenerates every file from the recorded data.
	os.Remove(filepath.Join(dir, "report.html"))
	os.Remove(filepath.Join(dir, "ledger.csv"))
	if out, err := exec.Command(toolBinary, "export", dir).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	for _, name := range []string{"report.html", "ledger.csv", "timeseries.csv", "flamegraph.svg", "kernel-alloc.pb.gz", "explanation.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("export did not write %s", name)
		}
	}
	if out, err := exec.Command(toolBinary, "export", dir, "--format", "gif").CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown format") {
		t.Errorf("export --format gif: %v %s", err, out)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func assertXML(t *testing.T, data []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
	}
}

// assertReportRenders loads report.html in headless Chromium and checks the
// rendered DOM for the verdict, the charts and the flamegraph.
func assertReportRenders(t *testing.T, path, binding string) {
	t.Helper()
	chromium := testenv.NeedTool(t, "chromium", "chromium")
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{`id="verdict"`, `class="layer"`, `class="line"`, `class="bar"`, `id="flamegraph"`, `id="cpu-flamegraph"`, binding + " bind",
		">socket buffers (tcp_mem pages)<", "connect rate (right axis)"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("the rendered report lacks %s", want)
		}
	}
	if bytes.Contains(dom, []byte("http://")) && bytes.Contains(dom, []byte("<script src")) {
		t.Error("the report fetches a script")
	}
	// Screenshots at a desktop's width and a laptop's half-screen: the
	// charts scale down (viewBox) instead of running off the page.
	for _, width := range []int{1400, 800} {
		png := filepath.Join(t.TempDir(), fmt.Sprintf("report-%d.png", width))
		cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
			"--user-data-dir="+t.TempDir(), fmt.Sprintf("--window-size=%d,3000", width), "--screenshot="+png, "file://"+path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chromium --screenshot: %v\n%s", err, out)
		}
		data, err := os.ReadFile(png)
		// A PNG's width is the big-endian word at byte 16 of its IHDR.
		if err != nil || len(data) < 50<<10 || binary.BigEndian.Uint32(data[16:20]) != uint32(width) {
			t.Errorf("screenshot at %d px: %d bytes, %v", width, len(data), err)
		}
	}
	if !bytes.Contains(dom, []byte(`viewBox=`)) {
		t.Error("the charts have no viewBox: they cannot scale to a narrow window")
	}
}

// assertLedgerCharted renders the report in headless Chromium and finds
// every ledger line as a bar of the ledger chart, with its kind.
func assertLedgerCharted(t *testing.T, path string, ledger []analysis.LedgerLine) {
	t.Helper()
	chromium := testenv.NeedTool(t, "chromium", "chromium")
	dom, err := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+path).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	start := bytes.Index(dom, []byte(`<svg id="ledger-chart"`))
	if start < 0 {
		t.Fatal("the rendered report has no ledger chart")
	}
	chart := string(dom[start:])
	chart = chart[:strings.Index(chart, "</svg>")]
	var names []string
	for _, l := range ledger {
		names = append(names, l.Name)
		if !strings.Contains(chart, "<title>"+template.HTMLEscapeString(l.Name)+" ("+l.Kind+"): ") {
			t.Errorf("the ledger chart lacks %s (%s)", l.Name, l.Kind)
		}
	}
	if n := strings.Count(chart, `class="ledger-bar"`); n != len(ledger) {
		t.Errorf("%d bars for %d ledger lines", n, len(ledger))
	}
	for _, want := range []string{"skbuff_small_head", "queued socket data outside slab"} {
		if !slices.Contains(names, want) {
			t.Errorf("a payload run's ledger without %q: %q", want, names)
		}
	}
}

// The README's loop: queued payloads, a smaller tcp_rmem, compare.
func TestTuneRerunCompare(t *testing.T) {
	needRoot(t)
	before := sysctls(t)
	const n = 10000
	a := run(t, "--conns", strconv.Itoa(n), "--listen", "127.0.0.1:19911", "--payload", "16KiB", "--unread", "--max-workers", "1")
	b := run(t, "--conns", strconv.Itoa(n), "--listen", "127.0.0.1:19911", "--payload", "16KiB", "--unread",
		"--sysctl", "net.ipv4.tcp_rmem=4096 4096 4096")
	if a.code != 0 || b.code != 0 {
		t.Fatalf("exits %d, %d\n%s\n%s", a.code, b.code, a.stderr, b.stderr)
	}
	assertSysctls(t, before)
	sa, sb := readSummary(t, a), readSummary(t, b)
	// The kernel's tcp_sendmsg bytes are the runner's: 8 a connection and the payload.
	for _, s := range []record.Summary{sa, sb} {
		// Queued data is counted once: truesize less the skb slab it includes.
		if u := s.Explanation.UnexplainedFraction; u > 0.02 || u < -0.02 {
			t.Errorf("%.1f %% of the growth unexplained (tcp_rmem %v)", 100*u, s.Host.TCPRmem)
		}
		if want := uint64(8*n) + s.Payload.Sent; s.Kernel.TCPSendmsg.RunBytesAsked != want {
			t.Errorf("tcp_sendmsg %d bytes on the run's port, the runner sent %d", s.Kernel.TCPSendmsg.RunBytesAsked, want)
		}
		if s.Kernel.SocketMemory.SockDiag.P50 < 16384 {
			t.Errorf("unread 16 KiB payloads, but p50 socket memory %d B", s.Kernel.SocketMemory.SockDiag.P50)
		}
	}
	// The payload run's report, rendered: every line of its ledger, the
	// queued buffers and skbuff_small_head among them, is in its chart.
	assertLedgerCharted(t, filepath.Join(a.dir, "report.html"), sa.Explanation.Ledger)
	out, err := exec.Command(toolBinary, "compare", a.dir, b.dir, "--json").Output()
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	var c analysis.Comparison
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	rows := map[string]analysis.Row{}
	for _, r := range c.Rows {
		rows[r.Name] = r
	}
	// The comparison reports what the kernel did, against sock_diag.
	q := rows["queued_per_conn"]
	if len(q.Values) != 2 || q.Values[0] != float64(sa.SocketBuffers)/n || q.Values[1] != float64(sb.SocketBuffers)/n || q.Diff[1] == 0 {
		t.Errorf("queued per connection %+v, sock_diag %d and %d", q, sa.SocketBuffers, sb.SocketBuffers)
	}
	if len(c.Settings) != 2 || !strings.Contains(strings.Join(c.Settings[1], " "), "tcp_rmem=4096 4096 4096") ||
		!strings.Contains(strings.Join(c.Settings[0], " "), "--max-workers 1") {
		t.Errorf("settings %v", c.Settings)
	}
	// In words: the setting, and the skbs it left in the senders' queues,
	// beyond what two runs of one command differ by.
	if len(c.Changes) != 1 || !strings.HasPrefix(c.Changes[0], "run 2 against run 1: set net.ipv4.tcp_rmem=4096 4096 4096") ||
		!strings.Contains(c.Changes[0], "skbuff_") || !strings.Contains(c.Changes[0], "Beyond run-to-run noise") {
		t.Errorf("changes %q", c.Changes)
	}
	html := filepath.Join(t.TempDir(), "compare.html")
	if out, err := exec.Command(toolBinary, "compare", a.dir, b.dir, "--html", html).CombinedOutput(); err != nil {
		t.Fatalf("compare --html: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(html)
	if !bytes.Contains(data, []byte(`id="compare"`)) || !bytes.Contains(data, []byte(`id="bykind"`)) || !bytes.Contains(data, []byte(`id="changes"`)) {
		t.Error("compare.html lacks its table, its chart or its words")
	}
}

func foldedSum(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		v, err := strconv.ParseInt(line[strings.LastIndex(line, " ")+1:], 10, 64)
		if err != nil {
			t.Fatalf("%s: line %q: %v", path, line, err)
		}
		total += v
	}
	return total
}

func profileSum(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range p.Sample {
		total += s.Value[0]
	}
	return total
}

// assertGoStacksRooted: each executable's CPU stacks (the frame after the
// phase names it) begin where Go stacks begin. Named with another file's
// symbols, a process's outermost frames come out as whatever that file has
// at those addresses.
func assertGoStacksRooted(t *testing.T, folded string, images ...string) {
	t.Helper()
	roots := map[string]bool{"runtime.goexit": true, "runtime.mstart": true, "runtime.mcall": true,
		"runtime.morestack": true, "runtime.rt0_go": true, "runtime.main": true, "runtime.systemstack": true}
	rooted, user, kernelOnly := map[string]int{}, map[string]int{}, map[string]int{}
	unrooted := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(folded), "\n") {
		stack, count, _ := strings.Cut(line, " ")
		n, _ := strconv.Atoi(count)
		frames := strings.Split(stack, ";")
		if len(frames) < 3 {
			continue
		}
		img := strings.Trim(frames[1], "[]")
		switch {
		case roots[frames[2]]:
			rooted[img] += n
			user[img] += n
		case !strings.Contains(frames[2], "."):
			// No user frames at all (a kernel symbol first): a task in the
			// kernel with no user stack to walk, as one exiting is.
			kernelOnly[img] += n
		default:
			user[img] += n
			unrooted[img] = append(unrooted[img], line)
		}
	}
	for _, img := range images {
		if user[img] == 0 || float64(rooted[img]) < 0.9*float64(user[img]) || kernelOnly[img] > user[img]/4 {
			t.Errorf("%s: %d of %d CPU samples with user frames begin where a Go stack begins (want 90 %%), %d without user frames (want at most a quarter as many); unrooted:\n%.1500s",
				img, rooted[img], user[img], kernelOnly[img], strings.Join(unrooted[img], "\n"))
		}
	}
}
