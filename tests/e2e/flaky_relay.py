#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# e2e helper: a TCP relay on 127.0.0.1:LISTEN to 127.0.0.1:TARGET that closes its first DROP
# connections at once (a failed attempt for the client) and relays the others both ways. Writes
# READY once listening; ends after SECONDS (60 at most).
#   flaky_relay.py LISTEN TARGET DROP READY [SECONDS]
import socket
import sys
import threading
import time


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen, target, drop, ready = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    end = time.time() + min(float(sys.argv[5]) if len(sys.argv) > 5 else 60.0, 60.0)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen))
    srv.listen(512)
    srv.settimeout(0.2)
    open(ready, "w").close()
    n = 0
    while time.time() < end:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        n += 1
        if n <= drop:
            c.close()
            continue
        u = socket.create_connection(("127.0.0.1", target), timeout=5)
        u.settimeout(None)
        for a, b in ((c, u), (u, c)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
