// goecho is an echo server written the way most Go servers are: net.Listen
// and a goroutine per connection. The root tests probe it with
// c10mprobe run --target.
package main

import (
	"errors"
	"log"
	"net"
	"os"
	"syscall"
	"time"
)

func main() {
	ln, err := net.Listen("tcp4", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of fds: what net/http does too (Server.Serve logs,
			// backs off on a temporary error and retries).
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				log.Printf("accept error: %v; retrying in 10ms", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			log.Fatal(err)
		}
		go echo(c)
	}
}

// echo copies what c sends back to it. Not io.Copy: a TCPConn's ReadFrom
// splices through a pipe, two more fds per connection while it waits.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
