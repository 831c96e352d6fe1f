package record

import (
	"bytes"
	"strings"
	"testing"

	"github.com/c10mprobe/c10mprobe/runner"
)

// The payload line says what was sent against what was asked, and why
// they differ.
func TestPayloadLineSaysSentAgainstAsked(t *testing.T) {
	for _, c := range []struct {
		p    runner.PayloadResult
		want string
	}{
		{runner.PayloadResult{Bytes: 64 << 20, Unread: true, Sent: 1570 << 20}, "sent 1.5 GiB of the 25.0 GiB asked (64.0 MiB a side on each of 200 verified connections); --unread: nothing was read"},
		{runner.PayloadResult{Bytes: 1 << 20, Sent: 400 << 20, Read: 400 << 20}, "sent 400.0 MiB of the 400.0 MiB asked (1.0 MiB a side on each of 200 verified connections), read back 400.0 MiB"},
		{runner.PayloadResult{Bytes: 1 << 20, Sent: 300 << 20}, "; 100.0 MiB were never sent"},
	} {
		var b bytes.Buffer
		writePayload(&b, &runner.Result{Mode: "run", Verified: 200, Payload: c.p})
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%+v: %q, want %q", c.p, b.String(), c.want)
		}
	}
	var b bytes.Buffer
	writePayload(&b, &runner.Result{Verified: 200})
	if b.Len() != 0 {
		t.Errorf("no payload, yet: %q", b.String())
	}
}
