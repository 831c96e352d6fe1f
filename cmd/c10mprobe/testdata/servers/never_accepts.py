# A server that listens and never accepts: its accept queue fills to the
# backlog it asked for, then the kernel drops SYNs. The root tests probe it
# with c10mprobe run --target. Usage: never_accepts.py ADDR PORT BACKLOG
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(int(sys.argv[3]))
time.sleep(3600)
