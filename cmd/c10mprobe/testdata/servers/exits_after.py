# Accepts N connections, holding each, then exits with status 3: a server
# that dies in the middle of a run.
import socket, sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(4096)
held = []
while len(held) < n:
    c, _ = s.accept()
    held.append(c)
sys.exit(3)
