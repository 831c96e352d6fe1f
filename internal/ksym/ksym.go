// Package ksym resolves kernel addresses to function names from
// /proc/kallsyms (addresses read as zero without root), and user addresses
// from an executable's ELF symbol table.
package ksym

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Table is the kernel's text symbols, sorted by address.
type Table struct {
	addrs []uint64
	names []string
}

// Load reads /proc/kallsyms.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &Table{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[1] {
		case "t", "T", "w", "W":
		default:
			continue
		}
		a, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		t.addrs = append(t.addrs, a)
		t.names = append(t.names, fields[2])
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.addrs) == 0 {
		return nil, fmt.Errorf("%s lists no addresses (reading them needs root)", path)
	}
	t.sort()
	return t, nil
}

// GoTable names the functions of a Go executable from its pclntab, which
// every Go binary keeps (go run and go test strip the ELF symbol table, not
// this): the workers' user-space frames when they ran from c10mprobe-worker,
// a binary other than the one symbolizing.
type GoTable struct{ tab *gosym.Table }

// FromGoBinary reads the pclntab of the Go executable at path.
func FromGoBinary(path string) (*GoTable, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s has no .gopclntab: not a Go executable", path)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("reading the pclntab of %s: %w", path, err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("decoding the pclntab of %s: %w", path, err)
	}
	return &GoTable{tab}, nil
}

// Name returns the function containing pc, or its hex form.
func (g *GoTable) Name(pc uint64) string {
	if fn := g.tab.PCToFunc(pc); fn != nil {
		return fn.Name
	}
	return fmt.Sprintf("0x%x", pc)
}

func (t *Table) sort() {
	idx := make([]int, len(t.addrs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return t.addrs[idx[i]] < t.addrs[idx[j]] })
	addrs, names := make([]uint64, len(idx)), make([]string, len(idx))
	for k, i := range idx {
		addrs[k], names[k] = t.addrs[i], t.names[i]
	}
	t.addrs, t.names = addrs, names
}

// Name returns the function containing addr, or its hex form.
func (t *Table) Name(addr uint64) string {
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr }) - 1
	if i < 0 {
		return fmt.Sprintf("0x%x", addr)
	}
	return t.names[i]
}
