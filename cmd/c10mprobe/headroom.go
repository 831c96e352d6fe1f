package main

// headroom answers run's question for a server already running: how many
// more connections it takes and what runs out first, from what it holds
// now. It reads sock_diag and /proc only: no connection, no sysctl, no eBPF.

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"github.com/c10mprobe/c10mprobe/internal/live"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/spf13/pflag"
)

const headroomExamples = `  sudo c10mprobe headroom --port 443
  sudo c10mprobe headroom --pid $(pidof nginx | tr ' ' ,) --json
`

func headroomCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("headroom", pflag.ContinueOnError)
	ports := fs.IntSlice("port", nil, "the server's listening TCP port (repeatable); its processes are found from the listener")
	pids := fs.IntSlice("pid", nil, "the server's processes (repeatable, or comma-separated); their ports are found from their listeners")
	var reserve cliflag.Size
	fs.Var(&reserve, "reserve", "memory to keep spare: memory binds when available memory falls to it (default max(1GiB, 5% of RAM))")
	asJSON := fs.Bool("json", false, "print the headroom as JSON")
	if err := parseFlags(fs, args, stdout, headroomExamples); err != nil {
		return err
	}
	var portList []uint16
	switch {
	case fs.NArg() > 0:
		return badInput("unexpected argument %q", fs.Arg(0))
	case len(*ports) == 0 && len(*pids) == 0:
		return badInput("give the server: --port PORT or --pid PID")
	}
	for _, p := range *ports {
		if p < 1 || p > 65535 {
			return badInput("--port %d is not a TCP port (1–65535)", p)
		}
		portList = append(portList, uint16(p))
	}
	hr, sample, err := live.Headroom(portList, *pids, uint64(reserve))
	switch {
	case errors.Is(err, live.ErrNoListener), errors.Is(err, live.ErrNoProcess):
		return badInput("%v", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: reading another user's processes needs root", err)
	case err != nil:
		return err
	}
	if *asJSON {
		return record.WriteJSONTo(stdout, struct {
			Headroom analysis.Headroom `json:"headroom"`
			Sample   *live.Server      `json:"sample"`
		}{hr, sample})
	}
	hr.WriteText(stdout)
	return nil
}
