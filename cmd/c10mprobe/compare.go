package main

import (
	"fmt"
	"io"
	"os"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/spf13/pflag"
)

func compareCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("compare", pflag.ContinueOnError)
	htmlOut := fs.String("html", "", "also write the comparison as an HTML page to this file")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args, stdout, stderr, "  c10mprobe compare runs/a runs/b --html compare.html\n"); !ok {
		return code
	}
	if fs.NArg() < 2 {
		fmt.Fprintln(stderr, "c10mprobe compare: give two or more run directories")
		return exitBadInput
	}
	var runs []analysis.Compared
	for _, dir := range fs.Args() {
		d, err := loadRunData(dir)
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe compare: %s: %v\n", dir, err)
			return exitBadInput
		}
		runs = append(runs, d.compared(dir))
	}
	c := analysis.Compare(runs)
	if *htmlOut != "" {
		f, err := os.Create(*htmlOut)
		if err == nil {
			err = analysis.WriteComparisonHTML(f, c)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "c10mprobe compare: writing %s: %v\n", *htmlOut, err)
			return exitNotAll
		}
	}
	if *asJSON {
		return jsonOut(stdout, stderr, c)
	}
	analysis.WriteComparisonText(stdout, c)
	return exitOK
}

// compared is what a run directory contributes to a comparison.
func (d *runData) compared(name string) analysis.Compared {
	res := d.sum.Result
	n := float64(max(1, res.Established))
	m := map[string]float64{
		"connections": float64(res.Established), "verified": float64(res.Verified),
		"connect_rate": res.ConnectRate, "verified_rate": res.VerifiedRate,
		"kernel_per_conn": d.e.KernelPerConnection, "user_per_conn": d.e.UserPerConnection,
		"runner_pss_per_conn": float64(res.RunnerPss) / n,
		"queued_per_conn":     float64(d.sum.SocketBuffers) / n,
		"tcp_mem_per_conn":    float64(max(0, d.in.Peak.TCPMemPages-d.in.Idle.TCPMemPages)*int64(os.Getpagesize())) / n,
	}
	if k := d.sum.Kernel; k != nil {
		m["socket_p50"], m["socket_p99"], m["socket_max"] = float64(k.SocketMemory.P50), float64(k.SocketMemory.P99), float64(k.SocketMemory.Max)
	}
	if len(d.e.Limits) > 0 && d.e.Limits[0].BindsAt != nil {
		m["binds_at"] = float64(*d.e.Limits[0].BindsAt)
	}
	var settings []string
	for _, c := range res.SysctlChanges {
		settings = append(settings, fmt.Sprintf("%s=%s", c.Key, c.New))
	}
	if p := res.Payload; p.Bytes > 0 {
		s := fmt.Sprintf("payload %d B", p.Bytes)
		if p.Unread {
			s += " unread"
		}
		settings = append(settings, s)
	}
	return analysis.Compared{Name: name, Explanation: d.e, Metrics: m, Settings: settings}
}
