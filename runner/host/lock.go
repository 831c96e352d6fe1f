package host

import (
	"errors"
	"fmt"

	"github.com/c10mprobe/c10mprobe/internal/hostlock"
)

// A run changes host-wide sysctls and journals the values it found; two
// runs at once would each journal the other's settings, and the later to
// finish would put them back, leaving the host changed. Every run and every
// restore holds this lock; its scope, the network namespace, is that of the
// net.* sysctls a run changes.
const hostLockName = "c10mprobe-host-lock"

// ErrHostBusy says another c10mprobe holds the host.
var ErrHostBusy = errors.New("another c10mprobe run or restore is using this host")

// LockHost takes the host lock, or returns ErrHostBusy naming its holder.
func LockHost() (unlock func(), err error) {
	unlock, err = hostlock.Take(hostLockName)
	var busy *hostlock.Busy
	switch {
	case errors.As(err, &busy) && busy.Pid > 0:
		return nil, fmt.Errorf("%w (pid %d)", ErrHostBusy, busy.Pid)
	case errors.As(err, &busy):
		return nil, ErrHostBusy
	}
	return unlock, err
}
