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
