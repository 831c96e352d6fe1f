# Accepts every connection and closes it at once.
import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096)
while True:
    c,_=s.accept(); c.close()
