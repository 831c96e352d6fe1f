package main

// headroom answers run's question for a server already running: how many
// more connections it takes and what runs out first, from what it holds
// now. It reads sock_diag and /proc only: no connection, no sysctl, no eBPF.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"github.com/c10mprobe/c10mprobe/internal/live"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/spf13/pflag"
)

const headroomExamples = `  sudo c10mprobe headroom --port 443
  sudo c10mprobe headroom --pid $(pidof nginx | tr ' ' ,) --json
  sudo c10mprobe headroom --port 443 --watch 10s --textfile /var/lib/node_exporter/textfile_collector
`

func headroomCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("headroom", pflag.ContinueOnError)
	ports := fs.IntSlice("port", nil, "the server's listening TCP port (repeatable); its processes are found from the listener")
	pids := fs.IntSlice("pid", nil, "the server's processes (repeatable, or comma-separated); their ports are found from their listeners; a server in another network namespace is read from inside it")
	var reserve cliflag.Size
	fs.Var(&reserve, "reserve", "memory to keep spare: memory binds when available memory falls to it (default max(1GiB, 5% of RAM))")
	asJSON := fs.Bool("json", false, "print the headroom as JSON (with --watch, a line a sample)")
	every := fs.Duration("watch", 0, "sample every D until interrupted: a line a sample, with the rate, when the first limit binds at it, and the server's memory a connection between samples")
	textfile := fs.String("textfile", "", "also write the figures in Prometheus text format to DIR/"+live.TextfileName+" for node_exporter's textfile collector, atomically (with --watch, every sample)")
	if err := parseFlags(fs, args, stdout, headroomExamples); err != nil {
		return err
	}
	var portList []uint16
	switch st, err := os.Stat(*textfile); {
	case fs.NArg() > 0:
		return badInput("unexpected argument %q", fs.Arg(0))
	case len(*ports) == 0 && len(*pids) == 0:
		return badInput("give the server: --port PORT or --pid PID")
	case fs.Changed("watch") && *every < 100*time.Millisecond:
		return badInput("--watch %v: sample at most every 100ms", *every)
	case *textfile != "" && (err != nil || !st.IsDir()):
		return badInput("--textfile %s is not a directory", *textfile)
	}
	for _, p := range *ports {
		if p < 1 || p > 65535 {
			return badInput("--port %d is not a TCP port (1–65535)", p)
		}
		portList = append(portList, uint16(p))
	}
	q := live.Query{Ports: portList, Pids: *pids, Reserve: uint64(reserve), Textfile: *textfile}
	hr, s, err := q.Sample()
	switch {
	case errors.Is(err, live.ErrNoListener), errors.Is(err, live.ErrNoProcess):
		return badInput("%v", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: reading another user's processes needs root", err)
	case err != nil:
		return err
	case *every > 0:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if !*asJSON {
			fmt.Fprintln(stdout, "Verdict:", hr.Verdict)
		}
		enc := json.NewEncoder(stdout)
		return q.Watch(ctx, *every, hr, func(prev *analysis.Headroom, cur analysis.Headroom, dt time.Duration) {
			if *asJSON {
				enc.Encode(cur)
			} else {
				analysis.WriteWatchLine(stdout, prev, cur, dt, time.Now())
			}
		})
	case *asJSON:
		return record.WriteJSONTo(stdout, struct {
			Headroom analysis.Headroom `json:"headroom"`
			Sample   *live.Server      `json:"sample"`
		}{hr, s})
	}
	hr.WriteText(stdout)
	return nil
}
