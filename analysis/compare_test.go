package analysis

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	a := Compared{Name: "a", Metrics: map[string]float64{"connections": 100, "socket_p50": 0},
		Explanation: Explanation{Ledger: []LedgerLine{{Kind: "slab", Name: "TCP", BytesPerConnection: 4736}}}}
	b := Compared{Name: "b", Metrics: map[string]float64{"connections": 150, "socket_p50": 4096}, Settings: []string{"x=1"},
		Explanation: Explanation{Ledger: []LedgerLine{{Kind: "slab", Name: "TCP", BytesPerConnection: 4736}, {Kind: "buffers", Name: "q", BytesPerConnection: 900}}}}
	c := Compare([]Compared{a, b})
	rows := map[string]Row{}
	for _, r := range c.Rows {
		rows[r.Name] = r
	}
	if r := rows["connections"]; r.Diff[1] != 50 || *r.Pct[1] != 50 {
		t.Errorf("connections %+v", r)
	}
	if r := rows["socket_p50"]; r.Diff[1] != 4096 || r.Pct[1] != nil {
		t.Errorf("socket_p50 from zero %+v", r)
	}
	if r := rows["buffers: q"]; r.Values[0] != 0 || r.Values[1] != 900 {
		t.Errorf("a ledger line only one run has: %+v", r)
	}
	if _, err := json.Marshal(c); err != nil {
		t.Errorf("comparison does not encode: %v", err)
	}
	var text bytes.Buffer
	WriteComparisonText(&text, c)
	if !strings.Contains(text.String(), "+50 (+50 %)") || !strings.Contains(text.String(), "+4096\n") && !strings.Contains(text.String(), "+4096 ") {
		t.Errorf("text:\n%s", text.String())
	}
}

// A comparison says in words what the later run set, which rows moved
// beyond run-to-run noise, and which did not: proc_inode_cache moving by
// a kilobyte a connection is a /proc reader, not an effect.
func TestCompareInWords(t *testing.T) {
	ledger := func(fclone, proc float64) []LedgerLine {
		return []LedgerLine{{Kind: "slab", Name: "TCP", BytesPerConnection: 4736},
			{Kind: "slab", Name: "skbuff_fclone_cache", BytesPerConnection: fclone},
			{Kind: "slab", Name: "proc_inode_cache", BytesPerConnection: proc}}
	}
	base := Compared{Name: "a", Settings: []string{"payload 16384 B unread"}, Metrics: map[string]float64{"connect_rate": 20000, "binds_at": 57675},
		Explanation: Explanation{BindingLimit: "tcp_mem", Verdict: "tcp_mem binds first", Ledger: ledger(1018, 1396)}}
	same := base
	same.Name, same.Metrics = "b", map[string]float64{"connect_rate": 17000, "binds_at": 57900}
	same.Explanation.Ledger = ledger(1013, 0)
	tuned := base
	tuned.Name, tuned.Settings = "c", []string{"net.ipv4.tcp_rmem=4096 4096 4096", "payload 16384 B unread"}
	tuned.Metrics = map[string]float64{"connect_rate": 19711, "binds_at": 46091}
	tuned.Explanation.Ledger = ledger(9474, 467)
	c := Compare([]Compared{base, same, tuned})
	if got := c.Changes[0]; got != "run 2 against run 1: the same settings. Nothing moved beyond run-to-run noise. 4 more differences are within noise." {
		t.Errorf("identical runs: %q", got)
	}
	got := c.Changes[1]
	for _, want := range []string{"run 3 against run 1: set net.ipv4.tcp_rmem=4096 4096 4096. Beyond run-to-run noise: first limit binds at -20 % (57,675 → 46,091)",
		"skbuff_fclone_cache +8.3 KiB a connection (skbs sent and not yet acknowledged or read", "within noise"} {
		if !strings.Contains(got, want) {
			t.Errorf("tuned run: %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "proc_inode_cache") || strings.Contains(got, "connects a second") {
		t.Errorf("tuned run: %q names a difference within noise", got)
	}
	var text bytes.Buffer
	WriteComparisonText(&text, c)
	if !strings.Contains(text.String(), "every run binds on tcp_mem first, at 57,675, then 57,900, then 46,091 connections") {
		t.Errorf("the verdicts, said once:\n%s", text.String())
	}
	var page bytes.Buffer
	if err := WriteComparisonHTML(&page, c); err != nil || strings.Count(page.String(), "<rect") < 3 || !strings.Contains(page.String(), `id="changes"`) {
		t.Errorf("compare.html: %v, no chart or no words", err)
	}
}
