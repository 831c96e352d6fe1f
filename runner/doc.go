// Package runner opens N connections to one server port with worker
// processes, exchanges a numbered message on each and verifies it, and puts
// the host back as it found it.
//
// run.go holds the phases (idle, connect, exchange, hold, close); prepare.go
// the checks made before anything changes; procs.go the worker processes and
// their reports; the worker process itself is package runner/worker;
// limit.go which limit
// bound; restore.go what undoes a run, on every exit and after a SIGKILL;
// host.go and preflight.go the limits read before a run. What a run changes
// on the host (the swapfile, the memory cap) is package runner/host, each
// change one lifecycle that Run applies and cleanup undoes.
//
// It imports golang.org/x/sys/unix, the standard library and internal/; never
// cilium/ebpf (package bpf), analysis or record. Callers observe a run through
// Config's callbacks.
package runner
