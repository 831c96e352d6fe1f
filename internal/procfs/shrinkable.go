package procfs

// The slab memory reclaim gives back: dentries and inodes no one holds.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ShrinkSizes are the sizes ShrinkableSlab prices what reclaim frees at,
// in bytes: a dentry, and an inode at the mean of the inode caches
// (/proc/slabinfo, which is root's). Read once: slabinfo walks every
// cache's partial slabs with interrupts off, too much for a guard's tick.
type ShrinkSizes struct {
	Dentry, Inode uint64
}

// ReadShrinkSizes reads ShrinkSizes from /proc/slabinfo.
func ReadShrinkSizes() (ShrinkSizes, error) {
	caches, err := ReadSlabinfo()
	if err != nil {
		return ShrinkSizes{}, err
	}
	return ShrinkSizes{Dentry: caches["dentry"].ObjSize, Inode: meanInodeSize(caches)}, nil
}

// ShrinkableSlab is the slab the kernel's shrinkers free under memory
// pressure, in bytes at sizes: the dentries on the dcache's LRU, which
// nothing holds (/proc/sys/fs/dentry-state nr_unused, negative ones among
// them), and the inodes of the positive ones with the inodes already
// unused (/proc/sys/fs/inode-state nr_unused). A socket's dentry and inode
// are held while its file is open, so a run's own are never counted. On
// this project's 6.18 host, 1.5 million negative dentries and a find over
// the disk made this 656 MiB where `echo 2 > drop_caches` then freed
// 672 MiB of SReclaimable (2026-12-07). Reclaim frees them in proportion
// to the page cache it scans, late: a --machine-mem run began with a
// million unused dentries and stopped on its guard with 634,000 of them
// left (2026-12-07). MemAvailable counts half of all reclaimable slab
// instead, the sockets' pinned dentries and inodes with it.
func ShrinkableSlab(sizes ShrinkSizes) (uint64, error) {
	dentries, err := readCounts(Root + "/sys/fs/dentry-state")
	if err != nil {
		return 0, err
	}
	inodes, err := readCounts(Root + "/sys/fs/inode-state")
	if err != nil {
		return 0, err
	}
	if len(dentries) < 5 || len(inodes) < 2 {
		return 0, fmt.Errorf("dentry-state %v, inode-state %v: fewer fields than the kernel writes", dentries, inodes)
	}
	unused, negative := dentries[1], min(dentries[1], dentries[4])
	return unused*sizes.Dentry + (unused-negative+inodes[1])*sizes.Inode, nil
}

// meanInodeSize is the mean size of the inodes in the filesystems' inode
// caches, weighted by the objects in use: ext4_inode_cache, xfs_inode,
// proc_inode_cache, shmem's, the generic inode_cache. Sockets' inodes
// (sock_inode_cache) are held while open, and lsm_inode_cache is an LSM's
// blob beside an inode, not one.
func meanInodeSize(caches map[string]SlabCache) uint64 {
	var objs, bytes uint64
	for name, c := range caches {
		if !strings.Contains(name, "inode") || name == "sock_inode_cache" || name == "lsm_inode_cache" {
			continue
		}
		objs += c.ActiveObjs
		bytes += c.ActiveObjs * c.ObjSize
	}
	if objs == 0 {
		return 0
	}
	return bytes / objs
}

// readCounts reads a line of whitespace-separated counts.
func readCounts(path string) ([]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, f := range strings.Fields(string(data)) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}
