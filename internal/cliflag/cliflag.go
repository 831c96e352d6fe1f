// Package cliflag holds the command line's value types: sizes, counts,
// addresses, sources and port ranges, each parsed and refused with one
// sentence that names what was expected.
package cliflag

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Size is a byte count such as 8GiB, 512MiB, 1.5G or 4096.
type Size uint64

func (s *Size) String() string {
	if *s == 0 {
		return "0"
	}
	return units.Bytes(uint64(*s))
}
func (s *Size) Type() string { return "size" }

func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

func ParseSize(v string) (uint64, error) {
	t := strings.TrimSpace(v)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size (try 512MiB, 8GiB or 4096)", v)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KB": 1e3, "KiB": 1 << 10,
		"M": 1 << 20, "MB": 1e6, "MiB": 1 << 20,
		"G": 1 << 30, "GB": 1e9, "GiB": 1 << 30,
		"T": 1 << 40, "TB": 1e12, "TiB": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q has an unknown unit %q (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)", v, unit)
	}
	// A conversion past 2^63 saturates: 9000000TiB would read as 8 EiB.
	if f*mult >= 1<<62 {
		return 0, fmt.Errorf("%q is more than any machine has", v)
	}
	if f > 0 && f*mult < 1 {
		return 0, fmt.Errorf("%q is less than a byte", v)
	}
	return uint64(f * mult), nil
}

// Count is a positive count that accepts 1000000, 1_000_000, 1,000,000 or 1e6.
type Count int

func (c *Count) String() string { return strconv.Itoa(int(*c)) }
func (c *Count) Type() string   { return "count" }

// grouped is digits in groups of three, separated by commas or underscores
// alone: 1,000,000 and 1_000_000, not 1,0,0.
var grouped = regexp.MustCompile(`^\d{1,3}([,_]\d{3})+$`)

func (c *Count) Set(v string) error {
	t := strings.TrimSpace(v)
	if strings.ContainsAny(t, ",_") {
		if !grouped.MatchString(t) {
			return fmt.Errorf("%q is not a whole number (group digits by three: 1,000,000 or 1_000_000)", v)
		}
		t = strings.NewReplacer("_", "", ",", "").Replace(t)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(t, 64)
		if ferr != nil || f != float64(int64(f)) {
			return fmt.Errorf("%q is not a whole number", v)
		}
		n = int64(f)
	}
	if n <= 0 {
		return fmt.Errorf("%q is not a positive number", v)
	}
	if n > 1<<31-1 {
		return fmt.Errorf("%q is too large", v)
	}
	*c = Count(n)
	return nil
}

// AddrPort is an IPv4 address:port.
type AddrPort netip.AddrPort

func (a *AddrPort) String() string {
	if !netip.AddrPort(*a).IsValid() {
		return ""
	}
	return netip.AddrPort(*a).String()
}
func (a *AddrPort) Type() string { return "addr:port" }

func (a *AddrPort) Set(v string) error {
	ap, err := netip.ParseAddrPort(v)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return fmt.Errorf("%q is not an IPv4 address:port such as 127.0.0.1:9999", v)
	}
	*a = AddrPort(ap)
	return nil
}

// Target is an IPv4 address:port, or HOST:PORT resolved to one when
// given, such as a Kubernetes Service's name a dialer dials.
type Target struct{ AddrPort }

func (t *Target) Set(v string) error {
	if _, err := netip.ParseAddrPort(v); err != nil {
		if ta, rerr := net.ResolveTCPAddr("tcp4", v); rerr == nil && ta.IP.To4() != nil {
			v = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ta.IP.To4())), uint16(ta.Port)).String()
		} else if strings.Contains(v, ":") && rerr != nil {
			return fmt.Errorf("%q: %v", v, rerr)
		}
	}
	return t.AddrPort.Set(v)
}

// Sources collects IPv4 addresses and CIDR ranges, repeatable and comma-separated.
type Sources []netip.Addr

const maxSources = 1 << 20

func (s *Sources) String() string {
	if len(*s) == 0 {
		return ""
	}
	return fmt.Sprintf("%d addresses", len(*s))
}
func (s *Sources) Type() string { return "addrs" }

func (s *Sources) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil || !p.Addr().Is4() {
				return fmt.Errorf("%q is not an IPv4 CIDR such as 127.0.1.0/24", part)
			}
			p = p.Masked()
			if p.Bits() < 12 {
				return fmt.Errorf("%q has more than %d addresses", part, maxSources)
			}
			for a := p.Addr(); p.Contains(a); a = a.Next() {
				*s = append(*s, a)
			}
		} else {
			a, err := netip.ParseAddr(part)
			if err != nil || !a.Is4() {
				return fmt.Errorf("%q is not an IPv4 address", part)
			}
			*s = append(*s, a)
		}
		if len(*s) > maxSources {
			return fmt.Errorf("more than %d source addresses", maxSources)
		}
	}
	return nil
}

// PortRange is LO-HI.
type PortRange [2]int

func (p *PortRange) String() string {
	if *p == [2]int{} {
		return ""
	}
	return fmt.Sprintf("%d-%d", p[0], p[1])
}
func (p *PortRange) Type() string { return "lo-hi" }

func (p *PortRange) Set(v string) error {
	lo, hi, ok := strings.Cut(v, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return fmt.Errorf("%q is not a port range such as 40000-40999", v)
	}
	*p = PortRange{a, b}
	return nil
}

// KeyValue is one KEY=VALUE of --sysctl.
type KeyValue struct{ Key, Value string }

// Sysctls collects KEY=VALUE, repeatable.
type Sysctls []KeyValue

func (s *Sysctls) String() string {
	parts := make([]string, len(*s))
	for i, kv := range *s {
		parts[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(parts, ",")
}
func (s *Sysctls) Type() string { return "key=value" }

func (s *Sysctls) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k, val = strings.TrimSpace(k), strings.TrimSpace(val)
	if !ok || k == "" || val == "" {
		return fmt.Errorf("%q is not KEY=VALUE such as net.ipv4.tcp_rmem=\"4096 4096 4096\"", v)
	}
	*s = append(*s, KeyValue{Key: k, Value: val})
	return nil
}
