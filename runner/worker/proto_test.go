package worker

import (
	"fmt"
	"os"
	"testing"
)

// A c10mprobe-worker from another build refuses its parent's configuration
// instead of misreading it.
func TestWorkerRefusesAnotherBuildsConfiguration(t *testing.T) {
	for name, cfg := range map[string]string{
		"older protocol": fmt.Sprintf(`{"proto":%d,"role":"client"}`, ProtoVersion-1),
		"unknown field":  fmt.Sprintf(`{"proto":%d,"role":"client","from_the_future":1}`, ProtoVersion),
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString(cfg)
		w.Close()
		stdin := os.Stdin
		os.Stdin = r
		code := Main()
		os.Stdin = stdin
		r.Close()
		if code != 2 {
			t.Errorf("%s: Main returned %d, want 2", name, code)
		}
	}
}

func TestStatsRoundTrip(t *testing.T) {
	s := Stats{Opened: 7, Established: 6, Verified: 5, FirstFail: uint8(FailPorts) + 1, FirstFailSrc: [4]byte{127, 0, 0, 2}}
	s.Failed[FailPorts] = 3
	var got Stats
	if err := got.Unmarshal(s.Marshal(make([]byte, StatsSize))); err != nil {
		t.Fatal(err)
	}
	if got != s {
		t.Errorf("round trip: got %+v, want %+v", got, s)
	}
	if err := got.Unmarshal(make([]byte, StatsSize-1)); err == nil {
		t.Error("accepted a short record")
	}
}

// Every failure kind has a name: the summary counts failures by it.
func TestEveryFailureKindHasAName(t *testing.T) {
	for k := FailKind(0); k < NumFailKinds; k++ {
		if k.String() == "" {
			t.Errorf("failure kind %d has no name", k)
		}
	}
}
