package main

import (
	"fmt"
	"strings"

	"github.com/c10mprobe/c10mprobe/runner"
)

// sysctlsValue collects KEY=VALUE, repeatable.
type sysctlsValue []runner.KeyValue

func (s *sysctlsValue) String() string {
	parts := make([]string, len(*s))
	for i, kv := range *s {
		parts[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(parts, ",")
}
func (s *sysctlsValue) Type() string { return "key=value" }

func (s *sysctlsValue) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k, val = strings.TrimSpace(k), strings.TrimSpace(val)
	if !ok || k == "" || val == "" {
		return fmt.Errorf("%q is not KEY=VALUE such as net.ipv4.tcp_rmem=\"4096 4096 4096\"", v)
	}
	*s = append(*s, runner.KeyValue{Key: k, Value: val})
	return nil
}
