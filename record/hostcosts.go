package record

import (
	"errors"
	"fmt"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/runner"
)

// ErrNoCosts: this host's slab object sizes cannot be read (they need root).
var ErrNoCosts = errors.New("no costs to scale")

// HostCosts are a connection's costs on this host without a run: the slab
// model's kernel bytes for family, from /proc/slabinfo's object sizes; and
// the host's memory in use and anonymous pages now, a prediction's default
// baseline.
func HostCosts(family runner.Family) (c analysis.Costs, used, anon uint64, err error) {
	h, err := runner.ReadHost()
	if err != nil {
		return c, 0, 0, err
	}
	per, src := h.KernelBytesPerConn(family)
	if per == 0 {
		return c, 0, 0, fmt.Errorf("%w (%s)", ErrNoCosts, src)
	}
	c = analysis.Costs{Kernel: float64(per), UserUnknown: true, Source: src + " (user space unknown without a run)",
		Lines: []analysis.LedgerLine{{Kind: "slab", Name: "socket objects (estimate)", BytesPerConnection: float64(per), Source: src}}}
	return c, h.Mem.MemTotal - h.Mem.MemAvailable, h.Mem.AnonPages, nil
}
