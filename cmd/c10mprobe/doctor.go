package main

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/record"
	"github.com/c10mprobe/c10mprobe/runner"
	"github.com/spf13/pflag"
)

func doctorCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("doctor", pflag.ContinueOnError)
	var conns cliflag.Count = 1000000
	fs.Var(&conns, "conns", "the connection count to check the limits for")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, stdout, "  sudo c10mprobe doctor\n  sudo c10mprobe doctor --conns 2000000 --json\n"); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return badInput("loading eBPF programs and reading /proc/slabinfo need root: rerun with sudo")
	}
	rep := bpf.Diagnose()
	m, err := procfs.ReadMeminfo()
	if err != nil {
		return err
	}
	// The limits as run would meet them, whatever memory they would take,
	// on a port of its own: another program on run's default is no matter here.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	listen := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	r, err := runner.Prepare(runner.Config{Conns: int(conns), Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), listen.Port()),
		Inflight: 512, Timeout: 1, Reserve: runner.DefaultReserve(m.MemTotal), Force: true})
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			Probes    bpf.Report     `json:"probes"`
			Preflight []runner.Check `json:"preflight"`
			Host      runner.Host    `json:"host"`
		}{rep, r.Preflight(), r.Host()}
		return record.WriteJSONTo(stdout, out)
	}
	rep.WriteText(stdout)
	fmt.Fprintf(stdout, "\nLimits for %d connections:\n", conns)
	record.WritePreflight(stdout, r.Preflight())
	return nil
}
