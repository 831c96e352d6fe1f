package main

// k8s prints manifests for a cluster the user already runs: serve as a Pod
// behind a Service, and the dialers as an Indexed Job. Kubernetes starts,
// places and retries them; c10mprobe orchestrates nothing of its own.

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"io"
	"net"
	"strconv"

	"github.com/c10mprobe/c10mprobe/internal/k8s"
	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

const k8sExamples = `  c10mprobe k8s --target c10mprobe-server:9999 --conns 1000000 --dialers 20 --image registry.example/c10mprobe:1 > c10m.yaml
  kubectl apply -f c10m.yaml && kubectl logs -f pod/c10mprobe-server
`

func k8sCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("k8s", pflag.ContinueOnError)
	var conns cliflag.Count
	fs.Var(&conns, "conns", "connections over all dialers (required)")
	target := fs.String("target", "", "HOST:PORT the dialers dial: the server's Service name, which these manifests create (required)")
	dialers := fs.Int("dialers", 0, "dialer pods: an Indexed Job's completions and parallelism (required)")
	image := fs.String("image", "", "container image with c10mprobe and c10mprobe-worker on its PATH (required; docs/many-machines.md)")
	namespace := fs.String("namespace", "", "namespace for every object (default: kubectl's)")
	if err := parseFlags(fs, args, stdout, k8sExamples); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*target)
	port, perr := strconv.Atoi(portStr)
	switch {
	case fs.NArg() > 0:
		return badInput("unexpected argument %q", fs.Arg(0))
	case conns == 0:
		return badInput("--conns is required, e.g. --conns 1000000")
	case *target == "":
		return badInput("--target is required: the Service name and port the dialers dial, e.g. c10mprobe-server:9999")
	case err != nil || perr != nil || port < 1 || port > 65535:
		return badInput("--target %q is not HOST:PORT", *target)
	case !k8s.ServiceName(host):
		return badInput("--target's host %q must be a Service name (lower-case letters, digits and '-'), which the manifests create", host)
	case *image == "":
		return badInput("--image is required: an image with c10mprobe and c10mprobe-worker on its PATH (docs/many-machines.md shows one)")
	case *dialers < 1:
		return badInput("--dialers must be at least 1, got %d", *dialers)
	case *dialers > int(conns):
		return badInput("--dialers %d for --conns %d leaves some dialers with nothing to open", *dialers, int(conns))
	}
	share := (int(conns) + *dialers - 1) / *dialers
	if share > k8s.MaxPortsPerDialer {
		return badInput("--conns %d over %d dialers is %s each, more than one pod address has ports for (%s with ip_local_port_range 1024–65535): use --dialers %d or more",
			int(conns), *dialers, units.Count(uint64(share)), units.Count(k8s.MaxPortsPerDialer), (int(conns)+k8s.MaxPortsPerDialer-1)/k8s.MaxPortsPerDialer)
	}
	docs := k8s.Manifests(k8s.Spec{Service: host, Port: port, Conns: int(conns), Dialers: *dialers, Share: share, Image: *image, Namespace: *namespace})
	fmt.Fprintf(stdout, "# c10mprobe %s: %s connections to %s from %d dialers (≈ %s each)\n", versionString(), units.Count(uint64(conns)), *target, *dialers, units.Count(uint64(share)))
	fmt.Fprintln(stdout, "# Privileged pods: c10mprobe sets its sysctls and RLIMIT_NOFILE itself and restores them; the probes need BPF.")
	enc := yaml.NewEncoder(stdout)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return enc.Close()
}
