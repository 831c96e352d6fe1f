// Package record is the one owner of a run directory's recorded data: it
// samples the host and the probes while a run goes (Recorder), builds
// summary.json's kernel section, symbolizes the probes' stacks, writes and
// reads summary.json, samples.json, the time series and the stacks, adapts
// them into analysis' input, and renders the exports into the directory.
//
// It sits between cmd and the packages that measure: it imports runner, bpf
// and analysis, and none of them imports it. File names are
// internal/rundir's, shared with the runner and the probes that write the
// rest of the directory.
package record
