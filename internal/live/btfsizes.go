package live

import (
	"github.com/cilium/ebpf/btf"
)

// btfCache is a slab cache a socket takes an object of, the struct its
// objects hold, and how SLUB lays them out: where a cache has a constructor
// or is SLAB_TYPESAFE_BY_RCU, the free pointer goes after the object (8
// bytes), and SLAB_HWCACHE_ALIGN rounds the slot to a cache line
// (calculate_sizes, mm/slub.c).
type btfCache struct {
	cache, structName string
	freeptrOutside    bool
	hwcacheAlign      bool
}

// btfCaches are slabmodel's per-socket caches as BTF types. The LSM blob
// caches (lsm_inode_cache, lsm_file_cache) are sized at boot by the LSMs
// loaded, which BTF does not say: left out.
var btfCaches = []btfCache{
	{"TCP", "tcp_sock", true, true}, // tcp_prot: SLAB_TYPESAFE_BY_RCU
	{"TCPv6", "tcp6_sock", true, true},
	{"sock_inode_cache", "socket_alloc", true, true}, // init_once constructor
	{"dentry", "dentry", false, false},
	// filp: SLAB_TYPESAFE_BY_RCU from 6.7, its free pointer inside struct
	// file (f_freeptr, kmem_cache_create_rcu) from 6.12; the cache line
	// absorbs the 8 bytes on 6.7–6.11.
	{"filp", "file", false, true},
	{"eventpoll_epi", "epitem", false, true},
	{"eventpoll_pwq", "eppoll_entry", false, false},
}

// cacheLine is SLUB's hardware cache alignment on x86-64 and arm64.
const cacheLine = 64

// btfSlabSizes prices the per-socket caches from the kernel's BTF
// (/sys/kernel/btf/vmlinux, readable by any user) where /proc/slabinfo and
// /sys/kernel/slab are root's: the struct's size, laid out as SLUB does.
// On 6.18 x86-64 this gives every cache's slabinfo objsize exactly
// (TestBTFSizesMatchSlabinfo); debug options (red zones, poisoning) add more.
func btfSlabSizes() map[string]uint64 {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil
	}
	sizes := map[string]uint64{}
	for _, c := range btfCaches {
		var st *btf.Struct
		if spec.TypeByName(c.structName, &st) != nil {
			continue
		}
		size := uint64(st.Size)
		if c.freeptrOutside {
			size += 8
		}
		align := uint64(8)
		if c.hwcacheAlign {
			align = cacheLine
		}
		sizes[c.cache] = (size + align - 1) / align * align
	}
	return sizes
}
