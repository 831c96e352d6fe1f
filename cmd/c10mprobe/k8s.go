package main

// k8s prints manifests for a cluster the user already runs: serve as a Pod
// behind a Service, and the dialers as an Indexed Job. Kubernetes starts,
// places and retries them; c10mprobe orchestrates nothing of its own.

import (
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/cliflag"
	"io"
	"net"
	"regexp"
	"strconv"

	"github.com/c10mprobe/c10mprobe/internal/units"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

const k8sExamples = `  c10mprobe k8s --target c10mprobe-server:9999 --conns 1000000 --dialers 20 --image registry.example/c10mprobe:1 > c10m.yaml
  kubectl apply -f c10m.yaml && kubectl logs -f pod/c10mprobe-server
`

// maxPortsPerDialer is what one pod's address can open to one server port:
// ip_local_port_range 1024–65535, which the manifest sets.
const maxPortsPerDialer = 65535 - 1024 + 1

// dnsLabel is a Kubernetes object name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

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
	case !dnsLabel.MatchString(host) || len(host) > 63:
		return badInput("--target's host %q must be a Service name (lower-case letters, digits and '-'), which the manifests create", host)
	case *image == "":
		return badInput("--image is required: an image with c10mprobe and c10mprobe-worker on its PATH (docs/many-machines.md shows one)")
	case *dialers < 1:
		return badInput("--dialers must be at least 1, got %d", *dialers)
	case *dialers > int(conns):
		return badInput("--dialers %d for --conns %d leaves some dialers with nothing to open", *dialers, int(conns))
	}
	share := (int(conns) + *dialers - 1) / *dialers
	if share > maxPortsPerDialer {
		return badInput("--conns %d over %d dialers is %s each, more than one pod address has ports for (%s with ip_local_port_range 1024–65535): use --dialers %d or more",
			int(conns), *dialers, units.Count(uint64(share)), units.Count(maxPortsPerDialer), (int(conns)+maxPortsPerDialer-1)/maxPortsPerDialer)
	}
	docs := k8sManifests(k8sSpec{Service: host, Port: port, Conns: int(conns), Dialers: *dialers, Share: share, Image: *image, Namespace: *namespace})
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

type k8sSpec struct {
	Service   string
	Port      int
	Conns     int
	Dialers   int
	Share     int
	Image     string
	Namespace string
}

// obj is a Kubernetes object as YAML maps: no client library for three
// small documents.
type obj = map[string]any

// k8sManifests are the server's Service and Pod and the dialers' Job.
func k8sManifests(s k8sSpec) []obj {
	meta := func(name string, labels obj) obj {
		m := obj{"name": name, "labels": labels}
		if s.Namespace != "" {
			m["namespace"] = s.Namespace
		}
		return m
	}
	serverLabels := obj{"app.kubernetes.io/name": "c10mprobe", "app.kubernetes.io/component": "server"}
	dialerLabels := obj{"app.kubernetes.io/name": "c10mprobe", "app.kubernetes.io/component": "dialer"}
	privileged := obj{"privileged": true}
	// Per socket on a host: ≈ 4 KiB of kernel slab (charged to no pod
	// limit but the node's) and a few hundred bytes of the runner's own.
	request := func(conns int) obj {
		mem := 256<<20 + uint64(conns)*5<<10
		return obj{"requests": obj{"cpu": "1", "memory": fmt.Sprintf("%dMi", mem>>20)}}
	}
	runs := obj{"name": "runs", "emptyDir": obj{}}
	tracing := obj{"name": "tracing", "hostPath": obj{"path": "/sys/kernel/tracing"}}
	mounts := []obj{{"name": "runs", "mountPath": "/runs"}, {"name": "tracing", "mountPath": "/sys/kernel/tracing"}}

	service := obj{
		"apiVersion": "v1", "kind": "Service",
		"metadata": meta(s.Service, serverLabels),
		"spec": obj{
			"selector": serverLabels,
			"ports":    []obj{{"name": "c10mprobe", "port": s.Port, "targetPort": s.Port, "protocol": "TCP"}},
		},
	}
	server := obj{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": meta(s.Service, serverLabels),
		"spec": obj{
			"restartPolicy": "Never",
			"containers": []obj{{
				"name": "serve", "image": s.Image,
				"args": []string{"c10mprobe", "serve", "--listen", fmt.Sprintf("0.0.0.0:%d", s.Port), "--conns", strconv.Itoa(s.Conns),
					"--wait", "10m", "--out", "/runs/serve"},
				"ports":           []obj{{"containerPort": s.Port, "protocol": "TCP"}},
				"securityContext": privileged,
				"resources":       request(s.Conns),
				"volumeMounts":    mounts,
			}},
			"volumes": []obj{runs, tracing},
		},
	}
	dialer := obj{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": meta(s.Service+"-dialers", dialerLabels),
		"spec": obj{
			"completionMode": "Indexed",
			"completions":    s.Dialers,
			"parallelism":    s.Dialers,
			"backoffLimit":   0,
			"template": obj{
				"metadata": obj{"labels": dialerLabels},
				"spec": obj{
					"restartPolicy": "Never",
					// One pod address each: its port range is the dialer's limit.
					"securityContext": obj{"sysctls": []obj{{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}}},
					"containers": []obj{{
						"name": "dial", "image": s.Image,
						// The index comes from JOB_COMPLETION_INDEX, which an
						// Indexed Job sets in every pod.
						"args": []string{"c10mprobe", "dial", "--target", fmt.Sprintf("%s:%d", s.Service, s.Port), "--conns", strconv.Itoa(s.Conns),
							"--of", strconv.Itoa(s.Dialers), "--out", "/runs/dial"},
						"securityContext": privileged,
						"resources":       request(s.Share),
						"volumeMounts":    mounts,
					}},
					"volumes": []obj{runs, tracing},
				},
			},
		},
	}
	return []obj{service, server, dialer}
}
