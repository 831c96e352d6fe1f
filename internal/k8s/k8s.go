// Package k8s makes the manifests that run c10mprobe on a cluster the user
// already runs: serve as a Pod behind a Service, and the dialers as an
// Indexed Job. Kubernetes starts, places and retries them.
package k8s

import (
	"fmt"
	"regexp"
	"strconv"
)

// MaxPortsPerDialer is what one pod's address can open to one server port:
// ip_local_port_range 1024–65535, which the manifest sets.
const MaxPortsPerDialer = 65535 - 1024 + 1

// dnsLabel is a Kubernetes object name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ServiceName says name can name a Service.
func ServiceName(name string) bool { return dnsLabel.MatchString(name) && len(name) <= 63 }

// Spec is what the manifests are made from: the server's Service name and
// port, the connections over all dialers, each dialer's share, the image.
type Spec struct {
	Service   string
	Port      int
	Conns     int
	Dialers   int
	Share     int
	Image     string
	Namespace string
}

// Obj is a Kubernetes object as YAML maps: no client library for three
// small documents.
type Obj = map[string]any

type obj = Obj

// Manifests are the server's Service and Pod and the dialers' Job.
func Manifests(s Spec) []Obj {
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
	return []Obj{service, server, dialer}
}
