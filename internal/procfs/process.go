package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Process is what one process holds, read from its /proc directory.
type Process struct {
	Pss     uint64 // smaps_rollup Pss, bytes
	PssAnon uint64 // smaps_rollup Pss_Anon (Linux 5.7): heap, thread stacks
	Threads uint64 // status Threads
	FDs     uint64 // entries of fd/
}

// ReadProcess reads pid's memory, threads and open files.
func ReadProcess(pid int) (Process, error) {
	var p Process
	err := scanLines(fmt.Sprintf("%s/%d/smaps_rollup", Root, pid), func(line string) error {
		for _, f := range []struct {
			key string
			to  *uint64
		}{{"Pss:", &p.Pss}, {"Pss_Anon:", &p.PssAnon}} {
			if rest, ok := strings.CutPrefix(line, f.key); ok {
				v, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
				if err != nil {
					return fmt.Errorf("smaps_rollup %s %w", f.key, err)
				}
				*f.to = v * 1024
			}
		}
		return nil
	})
	if err != nil {
		return p, err
	}
	err = scanLines(fmt.Sprintf("%s/%d/status", Root, pid), func(line string) error {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return fmt.Errorf("status Threads: %w", err)
			}
			p.Threads = v
		}
		return nil
	})
	if err != nil {
		return p, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("%s/%d/fd", Root, pid))
	p.FDs = uint64(len(fds))
	return p, err
}

// Limits are a process's soft resource limits; 0 is unlimited.
type Limits struct {
	NoFile uint64 // RLIMIT_NOFILE ("Max open files")
	NProc  uint64 // RLIMIT_NPROC ("Max processes")
}

// ReadLimits parses /proc/PID/limits.
func ReadLimits(pid int) (Limits, error) {
	var l Limits
	soft := func(rest string) (uint64, error) {
		f := strings.Fields(rest)
		if len(f) == 0 || f[0] == "unlimited" {
			return 0, nil
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	err := scanLines(fmt.Sprintf("%s/%d/limits", Root, pid), func(line string) error {
		var err error
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			l.NoFile, err = soft(rest)
		} else if rest, ok := strings.CutPrefix(line, "Max processes"); ok {
			l.NProc, err = soft(rest)
		}
		return err
	})
	return l, err
}

// Stat is what the tool reads of /proc/PID/stat.
type Stat struct {
	State     byte // R, S, D, Z (a zombie: exited, not yet reaped), …
	PPid      int
	PGrp      int
	MajFlt    uint64 // faults that read a page in (from swap, for anonymous memory)
	StartTime uint64 // clock ticks after boot: with the pid, names one process for good
}

// ReadStat parses /proc/PID/stat; the command name, which may hold spaces
// and parentheses, ends at the last ')'.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	if err != nil {
		return Stat{}, err
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("stat of pid %d: no command name", pid)
	}
	// After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime (proc_pid_stat(5)).
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("stat of pid %d: %d fields", pid, len(f))
	}
	var s Stat
	s.State = f[0][0]
	s.PPid, _ = strconv.Atoi(f[1])
	s.PGrp, _ = strconv.Atoi(f[2])
	s.MajFlt, _ = strconv.ParseUint(f[9], 10, 64)
	s.StartTime, err = strconv.ParseUint(f[19], 10, 64)
	return s, err
}

// Pids lists the processes now.
func Pids() ([]int, error) {
	entries, err := os.ReadDir(Root)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Tree returns roots and every live process descended from them: a
// server's master and the workers it forked. Zombies are left out.
func Tree(roots []int) ([]int, error) {
	pids, err := Pids()
	if err != nil {
		return nil, err
	}
	children, live := map[int][]int{}, map[int]bool{}
	for _, pid := range pids {
		if st, err := ReadStat(pid); err == nil && st.State != 'Z' {
			children[st.PPid] = append(children[st.PPid], pid)
			live[pid] = true
		}
	}
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if !live[pid] {
			continue // exited
		}
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out, nil
}

// Tasks is the number of threads on the host now: /proc/loadavg's
// "running/total" scheduling entities, what kernel.threads-max counts.
func Tasks() (int64, error) {
	data, err := os.ReadFile(Root + "/loadavg")
	if err != nil {
		return 0, err
	}
	// "0.00 0.01 0.05 1/113 4321"
	if f := strings.Fields(string(data)); len(f) > 3 {
		if _, total, ok := strings.Cut(f[3], "/"); ok {
			return strconv.ParseInt(total, 10, 64)
		}
	}
	return 0, fmt.Errorf("loadavg: %q", data)
}

// SocketOwners returns the processes holding the socket with this inode
// open (an fd linking to "socket:[INODE]"), as ss -p finds them.
func SocketOwners(inode uint32) ([]int, error) {
	pids, err := Pids()
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("socket:[%d]", inode)
	var out []int
	for _, pid := range pids {
		dir := fmt.Sprintf("%s/%d/fd", Root, pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(dir + "/" + fd.Name()); err == nil && link == want {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// VmMemory is a process's resident and swapped bytes (status VmRSS, VmSwap).
func VmMemory(pid int) (rss, swap uint64, err error) {
	err = scanLines(fmt.Sprintf("%s/%d/status", Root, pid), func(line string) error {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmSwap") {
			return nil
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return nil
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if k == "VmRSS" {
			rss = n * 1024
		} else {
			swap = n * 1024
		}
		return err
	})
	return rss, swap, err
}
