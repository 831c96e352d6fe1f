package analysis

import (
	"fmt"
	"strings"
)

// chargedPerSocket are the slab objects a socket's memory cgroup is charged
// for, on each end of a loopback connection: the objects allocated in the
// worker's own syscalls (socket(), accept4(), epoll_ctl()) from caches
// created with SLAB_ACCOUNT, and their LSM blobs. The server's TCP sock is
// allocated in softirq (tcp_v4_syn_recv_sock → sk_clone_lock) where there is
// no task memcg to charge, so only the client's sock counts.
var chargedPerSocket = struct{ client, server []string }{
	client: []string{"TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq", "lsm_inode_cache", "lsm_file_cache"},
	server: []string{"sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq", "lsm_inode_cache", "lsm_file_cache"},
}

// objcgPointer is what each charged slab object costs on top of its size:
// its obj_cgroup pointer in the slab's extension vector.
const objcgPointer = 8

// MemcgCharge models the bytes a memory cgroup is charged per connection,
// from the machine's slab object sizes (/proc/slabinfo objsize).
func MemcgCharge(objsize map[string]uint64) (float64, string) {
	var total float64
	var parts []string
	for _, side := range [][]string{chargedPerSocket.client, chargedPerSocket.server} {
		for _, c := range side {
			if sz, ok := objsize[c]; ok {
				total += float64(sz + objcgPointer)
			}
		}
	}
	for _, c := range chargedPerSocket.client {
		if sz, ok := objsize[c]; ok {
			n := 2
			if c == "TCP" {
				n = 1
			}
			parts = append(parts, fmt.Sprintf("%d × %s %d B", n, c, sz))
		}
	}
	return total, strings.Join(parts, " + ") + fmt.Sprintf(" + %d B of obj_cgroup pointer each", objcgPointer)
}

// PredictMemcg says how many connections fit in a cgroup of which `room`
// bytes are left for connections.
func PredictMemcg(room float64, perConn float64) uint64 {
	if perConn <= 0 || room <= 0 {
		return 0
	}
	return uint64(room / perConn)
}
