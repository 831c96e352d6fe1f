module github.com/c10mprobe/c10mprobe

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/google/pprof v0.0.0-20261105003125-4bf881d7fb0b
	github.com/spf13/pflag v1.1.0
	golang.org/x/sys v0.50.0
)

require gopkg.in/yaml.v3 v3.0.1

tool github.com/cilium/ebpf/cmd/bpf2go
