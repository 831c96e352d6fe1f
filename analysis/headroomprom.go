package analysis

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Registry holds the headroom as Prometheus gauges, for node_exporter's
// textfile collector: one series a limit (its headroom in connections, what
// it has in use and its maximum, in its own units), the connections now
// and what one more costs by kind.
func (h Headroom) Registry() *prometheus.Registry {
	port := h.portLabel()
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "c10mprobe", Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	conns := gauge("connections", "Established connections the server holds on its ports.", "port")
	headroom := gauge("headroom_connections", "Connections more the server takes before the limit binds, at today's costs.", "limit", "port")
	inUse := gauge("limit_in_use", "What the limit counts now, in its own units (fds, pages, bytes, entries, ports).", "limit", "port")
	maxV := gauge("limit_max", "The limit, in its own units.", "limit", "port")
	bytes := gauge("connection_bytes", "Memory one connection more costs, by kind.", "kind", "port")
	conns.WithLabelValues(port).Set(float64(h.Now))
	seen := map[string]bool{}
	for _, l := range h.Limits {
		name := strings.ReplaceAll(l.Name, " ", "_")
		if seen[name] {
			continue // a second listener's accept queue: the first is kept
		}
		seen[name] = true
		if l.More != nil {
			headroom.WithLabelValues(name, port).Set(float64(*l.More))
		}
		inUse.WithLabelValues(name, port).Set(float64(l.InUse))
		maxV.WithLabelValues(name, port).Set(float64(l.Max))
	}
	c := h.PerConn
	for kind, v := range map[string]float64{"kernel": c.Kernel, "buffers": c.Buffers, "user": c.User} {
		bytes.WithLabelValues(kind, port).Set(v)
	}
	return reg
}

func (h Headroom) portLabel() string {
	ports := make([]string, len(h.Ports))
	for i, p := range h.Ports {
		ports[i] = fmt.Sprint(p)
	}
	return strings.Join(ports, ",")
}
