// Command c10mprobe measures how many TCP connections a Linux machine holds
// and what runs out first.
//
// This package is flags, wiring and terminal output only: runner runs,
// bpf measures, record records and reads run directories, analysis explains.
// Each command returns an error that carries its exit code (0 all verified,
// 1 not, 2 bad input) and is printed once, by cli.
package main
