package hostlock

import (
	"errors"
	"os"
	"testing"
)

func TestTakeNamesTheHolderAndReleases(t *testing.T) {
	const name = "c10mprobe-hostlock-test"
	release, err := Take(name)
	if err != nil {
		t.Fatal(err)
	}
	var busy *Busy
	if _, err := Take(name); !errors.As(err, &busy) || busy.Pid != int32(os.Getpid()) {
		t.Errorf("second Take: %v, want busy, held by pid %d", err, os.Getpid())
	}
	release()
	again, err := Take(name)
	if err != nil {
		t.Fatalf("Take after release: %v", err)
	}
	again()
}
