package main

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestK8sManifests parses what k8s prints as YAML and checks it as a
// cluster would read it: the Service the dialers dial, the server Pod it
// selects, and an Indexed Job of K dialers that share N.
func TestK8sManifests(t *testing.T) {
	var out, errOut bytes.Buffer
	code := cli([]string{"k8s", "--target", "c10m-srv:9999", "--conns", "1000000", "--dialers", "20", "--image", "registry.example/c10mprobe:1"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	type meta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	type container struct {
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			ContainerPort int `yaml:"containerPort"`
		} `yaml:"ports"`
		SecurityContext struct {
			Privileged bool `yaml:"privileged"`
		} `yaml:"securityContext"`
	}
	type podSpec struct {
		RestartPolicy   string `yaml:"restartPolicy"`
		SecurityContext struct {
			Sysctls []struct{ Name, Value string } `yaml:"sysctls"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
	}
	type doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   meta   `yaml:"metadata"`
		Spec       struct {
			// Service
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Port, TargetPort int
			} `yaml:"ports"`
			// Pod
			podSpec `yaml:",inline"`
			// Job
			CompletionMode string `yaml:"completionMode"`
			Completions    int    `yaml:"completions"`
			Parallelism    int    `yaml:"parallelism"`
			Template       struct {
				Metadata meta    `yaml:"metadata"`
				Spec     podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	byKind := map[string]doc{}
	dec := yaml.NewDecoder(&out)
	for {
		var d doc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not YAML: %v", err)
		}
		byKind[d.Kind] = d
	}
	svc, pod, job := byKind["Service"], byKind["Pod"], byKind["Job"]
	if svc.Metadata.Name != "c10m-srv" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9999 {
		t.Errorf("Service %+v, want c10m-srv on 9999", svc)
	}
	// The Service selects the server Pod.
	for k, v := range svc.Spec.Selector {
		if pod.Metadata.Labels[k] != v {
			t.Errorf("the Service's selector %s=%s does not select the server Pod (%v)", k, v, pod.Metadata.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(pod.Spec.Containers) != 1 {
		t.Fatalf("Service selector %v, server Pod %+v", svc.Spec.Selector, pod)
	}
	sc := pod.Spec.Containers[0]
	if want := []string{"c10mprobe", "serve", "--listen", "0.0.0.0:9999", "--conns", "1000000"}; !slices.Equal(sc.Args[:len(want)], want) || !sc.SecurityContext.Privileged {
		t.Errorf("server args %v (privileged %v), want %v…", sc.Args, sc.SecurityContext.Privileged, want)
	}
	if job.APIVersion != "batch/v1" || job.Spec.CompletionMode != "Indexed" || job.Spec.Completions != 20 || job.Spec.Parallelism != 20 {
		t.Errorf("Job %s %s completions %d parallelism %d, want batch/v1 Indexed 20 20", job.APIVersion, job.Spec.CompletionMode, job.Spec.Completions, job.Spec.Parallelism)
	}
	dc := job.Spec.Template.Spec.Containers
	if len(dc) != 1 || dc[0].Image != "registry.example/c10mprobe:1" || job.Spec.Template.Spec.RestartPolicy != "Never" {
		t.Fatalf("dialer pod %+v", job.Spec.Template.Spec)
	}
	// Each pod takes its index from JOB_COMPLETION_INDEX: no --index.
	if want := []string{"c10mprobe", "dial", "--target", "c10m-srv:9999", "--conns", "1000000", "--of", "20"}; !slices.Equal(dc[0].Args[:len(want)], want) || slices.Contains(dc[0].Args, "--index") {
		t.Errorf("dialer args %v, want %v… and no --index", dc[0].Args, want)
	}
	if s := job.Spec.Template.Spec.SecurityContext.Sysctls; len(s) != 1 || s[0].Name != "net.ipv4.ip_local_port_range" {
		t.Errorf("dialer sysctls %+v, want the port range", s)
	}
	// The dialers' args parse as dial's flags, the index from the environment.
	t.Setenv("JOB_COMPLETION_INDEX", "7")
	// The Service name resolves only in the cluster: stand an address in.
	args := slices.Clone(dc[0].Args[2:])
	args[slices.Index(args, "--target")+1] = "127.0.0.1:9999"
	f, err := parseModeFlags("dial", args, io.Discard)
	if err != nil || f.cfg.Index != 7 || f.cfg.Of != 20 || f.cfg.Conns != 1000000 {
		t.Errorf("dial flags from the manifest: %+v, %v; want index 7 of 20", f, err)
	}
}

func TestK8sBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "srv:9999", "--conns", "100", "--image", "i"}, "--dialers must be"},
		{[]string{"--target", "Srv_1:9999", "--conns", "100", "--dialers", "2", "--image", "i"}, "Service name"},
		{[]string{"--target", "srv", "--conns", "100", "--dialers", "2", "--image", "i"}, "not HOST:PORT"},
		{[]string{"--target", "srv:9999", "--conns", "1000000", "--dialers", "2", "--image", "i"}, "use --dialers 16 or more"},
		{[]string{"--target", "srv:9999", "--conns", "100", "--dialers", "2"}, "--image is required"},
	} {
		var out, errOut bytes.Buffer
		if code := cli(append([]string{"k8s"}, tc.args...), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
