// Package slabmodel is what one loopback connection allocates from the slab,
// and what of it a memory cgroup is charged: the model the preflight, the
// memory cap's prediction and the probes' watch list share.
package slabmodel

import (
	"fmt"
	"strings"
)

// PerSocket are the objects every socket of a connection allocates, at each
// end: the sock, its inode (sock_alloc), the file's dentry and struct file
// (sock_alloc_file), and the epoll item that watches it.
var PerSocket = []string{"TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi"}

// Charged are the objects a socket's memory cgroup is charged for: those
// allocated in the worker's own syscalls (socket(), accept4(), epoll_ctl())
// from caches created with SLAB_ACCOUNT, and their LSM blobs.
var Charged = append(append([]string(nil), PerSocket...), "eventpoll_pwq", "lsm_inode_cache", "lsm_file_cache")

// SoftirqSock is the server's sock: tcp_v4_syn_recv_sock → sk_clone_lock
// allocates it in softirq, where there is no task memcg to charge.
const SoftirqSock = "TCP"

// Watched are the caches the probes count: everything Charged, the sock
// types a run may meet, bind buckets and skb structs; and the /proc inodes
// an fd-listing agent (lsof, ss -p, a monitor walking /proc/PID/fd) makes per
// open socket, so that the run's share and the rest of the machine's can be
// told apart. skbuff_small_head is left out: skb heads are freed with kfree()
// (skb_kfree_head), whose tracepoint does not name the cache, so its live
// count cannot be kept.
var Watched = append(append([]string(nil), Charged...),
	"TCPv6", "request_sock_TCP", "tw_sock_TCP", "tcp_bind_bucket", "tcp_bind2_bucket",
	"skbuff_head_cache", "skbuff_fclone_cache", "proc_inode_cache", "ep_head")

// ObjcgPointer is what each charged slab object costs on top of its size:
// its obj_cgroup pointer in the slab's extension vector.
const ObjcgPointer = 8

// KernelBytes estimates the unswappable kernel memory of one connection (two
// sockets) from slab object sizes, and says how: the objects every socket
// allocates, their LSM blobs and epoll wait-queue entry (Charged), each at
// its share of its slab's pages where share has it (a slab page is not
// filled to the last byte: TCP's 13 objects of 2,368 B take 8 pages), else
// at its size. Measured runs come out higher still (docs/measurements.md,
// "Figures behind the code"): slabs partly filled as they grow, and an
// agent walking /proc/PID/fd adds its /proc inodes; the run's ledger says
// which.
//
// sock is the sock's cache: TCP, or TCPv6 for AF_INET6 sockets (IPv4-mapped
// ones included), whose objects are larger.
func KernelBytes(objsize, share map[string]uint64, sock string) (uint64, string) {
	var per uint64
	var parts []string
	shares := len(share) > 0
	for _, c := range Charged {
		if c == "TCP" {
			c = sock
		}
		sz := objsize[c]
		if s := share[c]; s > 0 {
			sz = s
		}
		if sz > 0 {
			per += sz
			parts = append(parts, fmt.Sprintf("%s %d", c, sz))
		}
	}
	how := "2 × (" + strings.Join(parts, " + ") + ") B"
	if shares {
		how += ", each object's share of its slab's pages"
	}
	return 2 * per, how + " from /proc/slabinfo"
}

// MemcgCharge models the bytes a memory cgroup is charged per connection,
// from the machine's slab object sizes (/proc/slabinfo objsize).
func MemcgCharge(objsize map[string]uint64) (float64, string) {
	var total float64
	var parts []string
	for _, c := range Charged {
		sz, ok := objsize[c]
		if !ok {
			continue
		}
		n := 2
		if c == SoftirqSock {
			n = 1
		}
		total += float64(n) * float64(sz+ObjcgPointer)
		parts = append(parts, fmt.Sprintf("%d × %s %d B", n, c, sz))
	}
	return total, strings.Join(parts, " + ") + fmt.Sprintf(" + %d B of obj_cgroup pointer each", ObjcgPointer)
}
