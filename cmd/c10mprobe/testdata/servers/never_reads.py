# Accepts every connection, keeps it, and never reads or writes.
import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096)
held=[]
while True:
    c,_=s.accept(); held.append(c)
