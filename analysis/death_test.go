package analysis

import (
	"strings"
	"testing"
)

func TestDeathSentenceSaysHowWhenAndWhatWasLost(t *testing.T) {
	r := Run{Connections: 150000, Deaths: []Death{
		{Worker: "client worker 1 (pid 7)", How: "killed by SIGKILL", OOMKill: true, When: "during connect", HeldBefore: 150000, HeldAfter: 100000, Counted: true},
		{Worker: "server worker 0 (pid 9)", How: "exit status 2", When: "during hold", HeldBefore: 100000},
	}}
	got := deathSentence(r)
	for _, want := range []string{
		"client worker 1 (pid 7) was killed by SIGKILL during connect, by the OOM killer",
		"150,000 connections verified before it and 100,000 held at both ends after (sock_diag): 50,000 lost with it",
		"server worker 0 (pid 9) exited (exit status 2) during hold, with 100,000 connections verified before it;",
		"the figures below are from the peak, 150,000 connections held",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "server worker 0 (pid 9) exited (exit status 2) during hold, with 100,000 connections verified before it and") {
		t.Errorf("an uncounted death claims a count after it: %q", got)
	}
}
