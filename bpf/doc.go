// Package bpf measures, from inside the kernel, what each connection of a
// run costs: slab objects by cache, pages, socket buffers, tcp_sendmsg,
// reclaim and OOM, CPU samples. Counting is done in the kernel; Go reads
// snapshots (Open, Snapshot, Close), and Diagnose says what this kernel
// offers for doctor.
//
// The C is c10m.bpf.c, compiled by bpf2go (gen.go) into the committed
// probes_x86_bpfel.{go,o}. This package never opens a TCP socket and never
// imports runner or analysis: the probes watch a run, they do not make one.
package bpf
