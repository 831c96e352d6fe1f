// Package analysis turns a run's recorded samples into an explanation and
// renders it: the ledger of where memory went, the limits table, the
// verdict, predictions for other machines, comparisons, and the exports
// (CSV, JSON, folded stacks, pprof, SVG flamegraphs, HTML).
//
// It is pure: its input is its own types (Run, Sample, Stack), adapted from a
// run directory by package record. It imports no unix and no ebpf, makes no
// syscall and reads no file, so it builds anywhere and is tested on recorded
// runs (testdata/, golden files, -update).
package analysis
