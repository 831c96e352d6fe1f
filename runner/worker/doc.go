// Package worker is the worker process alone: what c10mprobe-worker (or
// c10mprobe re-executed with Arg) runs for each worker of a run. A client or
// server worker holds its share of the connections in one epoll loop, with
// one 12-byte, pointer-free record per fd and raw syscalls (rawsys.go);
// client.go opens, server.go accepts and sends the numbered messages. The
// parent drives it over a SOCK_SEQPACKET socketpair (proto.go: one command
// byte down, one fixed-size Stats record up) and hands it its Config as JSON
// on stdin. The ballast (ballast.go) is the same executable in another role.
//
// It imports golang.org/x/sys/unix and the standard library only, so that
// the hundreds of worker processes of a big run carry nothing else: no
// runner, no host changes, no eBPF.
package worker
