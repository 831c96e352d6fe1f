// Package rundir names the files of a run directory. The runner, the probes
// and the recorder each write some of them and `restore`, `explain` and
// `export` read them back, so their names live here, once.
package rundir

// Written by the runner.
const (
	// Journal is the sysctl journal: every change, written before it is made.
	Journal = "sysctl-journal.json"
	// Workers lists pid, role and index of every worker process.
	Workers = "workers.pids"
	// Server is the address:port clients connect to, and for a server the
	// user brought the run's client addresses, so that restore can free the
	// TIME_WAIT sockets a killed run's workers left.
	Server = "server.addr"
	// ServerGroup is "PGID STARTTIME" of a --server-cmd's process group
	// while it runs, so that restore stops it after a SIGKILL of c10mprobe.
	ServerGroup = "server.pgid"
	// ServerLog is a --server-cmd's stdout and stderr.
	ServerLog = "server.log"
	// Memcg names the run's memory cgroup while it exists.
	Memcg = "memcg.path"
	// Swap names the run's swapfile while it exists.
	Swap = "swap.path"
	// Swapfile is the swap area itself.
	Swapfile = "swapfile"
	// NetnsJournal is --netns's own sysctl journal, kept by the process
	// that made the namespace: net.ipv4.tcp_child_ehash_entries, a host
	// value the kernel reads when a namespace is made.
	NetnsJournal = "netns-journal.json"
	// Changes lists, a name a line, each host change as it is applied
	// (runner/host): restore undoes them from it, newest first.
	Changes = "host-changes"
)

// Written by the probes: present while the run has tracefs mounted.
const Tracefs = "tracefs-mounted"

// Written by the recorder at the end of a run; exports derive from them.
const (
	Summary    = "summary.json"
	Samples    = "samples.json"
	Timeseries = "timeseries.json"
	Stacks     = "stacks.json"
	CPUStacks  = "cpu-stacks.json"
)
