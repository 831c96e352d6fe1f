package procfs

import (
	"os"
	"os/exec"
	"testing"
)

// The readers against what this process knows of itself, on the real /proc.
func TestProcessReaders(t *testing.T) {
	pid := os.Getpid()
	st, err := ReadStat(pid)
	if err != nil || st.PPid != os.Getppid() || st.StartTime == 0 {
		t.Errorf("ReadStat(self) = %+v, %v; want ppid %d", st, err, os.Getppid())
	}
	if rss, _, err := VmMemory(pid); err != nil || rss == 0 {
		t.Errorf("VmMemory(self): rss %d, %v", rss, err)
	}
	p, err := ReadProcess(pid)
	if err != nil || p.Threads == 0 || p.FDs < 3 || p.Pss == 0 {
		t.Errorf("ReadProcess(self) = %+v, %v", p, err)
	}
	// A child is in this process's tree; a finished one is not.
	child := exec.Command("sleep", "5")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	tree, err := Tree([]int{pid})
	found := false
	for _, q := range tree {
		found = found || q == child.Process.Pid
	}
	child.Process.Kill()
	child.Wait()
	if err != nil || !found || tree[0] != pid {
		t.Errorf("Tree(self) = %v, %v; want self first and the child %d", tree, err, child.Process.Pid)
	}
}

// The kernel's headroom is free memory less reserves: never above MemFree.
func TestKernelHeadroom(t *testing.T) {
	h, err := KernelHeadroom()
	m, merr := ReadMeminfo()
	if err != nil || merr != nil || h == 0 || h > m.MemFree {
		t.Errorf("KernelHeadroom %d (%v), MemFree %d (%v)", h, err, m.MemFree, merr)
	}
}
