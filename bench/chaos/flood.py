#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# flood.py: hostile clients of the flood scenarios (bench/chaos/flood_*.sh; docs/RELIABILITY.md).
# One process, one epoll loop, every wait bounded by --duration. Keeps --conns connections open
# at once: each one the edge closes is opened again (the flood lasts the whole window).
#   idle       TCP connections that never start the TLS handshake (the handshake deadline cuts
#              them)
#   slowloris  TLS connections that send a REGISTER's header one byte every --interval seconds
#              (the message deadline cuts them)
#   handshake  TLS connections closed as soon as their handshake completed (a handshake flood:
#              --conns of them in progress at once)
#   stall      TLS connections that send a ClientHello and never answer the server's flight
#              (the handshake in flight holds OpenSSL's state until the deadline cuts it);
#              "answered" counts those whose ClientHello the edge answered
#   nonreader  TLS connections (receive buffer --rcvbuf bytes) that send OPTIONS without end and
#              never read an answer (the output queue cap cuts them)
#   limits     one TLS connection at a time, each sending one message over a limit (size, header
#              count, line length, in turn) and reading until the edge closes it; prints the
#              answers by kind and status, and how many the edge did not close within 5 s
# At the end: closes what is open and prints one JSON line: connections opened, cut by the edge,
# connect/handshake errors, most open at once, the time from open to cut (p50/max, ms), bytes
# sent.
import argparse
import errno
import json
import selectors
import socket
import ssl
import time

HEAD = (
    "REGISTER sip:edge.example.test SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-slow{n}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:slow@example.test>;tag=s{n}\r\n"
    "To: <sip:slow@example.test>\r\n"
    "Call-ID: slowloris-{n}\r\n"
    "CSeq: 1 REGISTER\r\n"
    "X-Padding: " + "a" * 4000 + "\r\n"
)
OPTIONS = (
    "OPTIONS sip:edge.example.test SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-nr{n}-{i}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:nonreader@example.test>;tag=n{n}\r\n"
    "To: <sip:edge.example.test>\r\n"
    "Call-ID: nonreader-{n}\r\n"
    "CSeq: {i} OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def bad_message(kind, n):
    """One message over a limit of the edge's (defaults: 64 KiB, 64 headers, 8 KiB lines)."""
    head = OPTIONS.format(n=n, i=1).replace("Content-Length: 0\r\n\r\n", "")
    if kind == "size":
        return (head + "Content-Length: 70000\r\n\r\n").encode() + b"x" * 70000
    if kind == "headers":
        return (head + "".join("X-H%d: v\r\n" % i for i in range(100))
                + "Content-Length: 0\r\n\r\n").encode()
    return (head + "X-Long: " + "l" * 9000 + "\r\nContent-Length: 0\r\n\r\n").encode()


def limits(a):
    """Sequential: one connection per message over a limit, read until the edge closes."""
    ctx = ssl.create_default_context(cafile=a.ca)
    st = {"sent": 0, "closed": 0, "not_closed": 0, "errors": 0, "status": {}}
    t0 = time.monotonic()
    end = t0 + a.duration
    kinds = ("size", "headers", "line")
    n = 0
    while time.monotonic() < end:
        kind = kinds[n % 3]
        n += 1
        try:
            raw = socket.create_connection((a.host, a.port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname=a.server_name)
        except (OSError, ssl.SSLError):
            st["errors"] += 1
            time.sleep(0.05)
            continue
        buf = b""
        try:
            s.settimeout(max(0.1, min(5.0, end + 5 - time.monotonic())))
            s.sendall(bad_message(kind, n))
            st["sent"] += 1
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            st["closed"] += 1
        except socket.timeout:
            st["not_closed"] += 1
        except (OSError, ssl.SSLError):
            st["closed"] += 1  # reset: closed with our bytes unread
        finally:
            s.close()
        code = buf.split(b" ", 2)[1].decode() if buf.startswith(b"SIP/2.0 ") else "none"
        key = "%s:%s" % (kind, code)
        st["status"][key] = st["status"].get(key, 0) + 1
    st["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(st), flush=True)


class Conn:
    __slots__ = ("sock", "tls", "state", "t_open", "n", "next_send", "pos", "data", "i",
                 "answered")


class Flood:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.ctx = None
        if a.mode != "idle":
            self.ctx = ssl.create_default_context(cafile=a.ca)
        self.open = {}
        self.seq = 0
        self.st = {"opened": 0, "cut": 0, "connect_errors": 0, "tls_errors": 0,
                   "max_open": 0, "bytes_sent": 0, "handshakes": 0, "answered": 0}
        self.ttl = []

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.a.mode == "nonreader":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.a.rcvbuf)
        if self.a.source:
            s.bind((self.a.source, 0))
        s.setblocking(False)
        rc = s.connect_ex((self.a.host, self.a.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            self.st["connect_errors"] += 1
            return False
        c = Conn()
        c.sock, c.tls, c.state, c.t_open = s, None, "connecting", time.monotonic()
        self.seq += 1
        c.n, c.next_send, c.pos, c.i = self.seq, 0.0, 0, 0
        c.data = HEAD.format(n=c.n).encode() if self.a.mode == "slowloris" else b""
        self.open[s.fileno()] = c
        self.sel.register(s, selectors.EVENT_WRITE, c)
        self.st["opened"] += 1
        self.st["max_open"] = max(self.st["max_open"], len(self.open))
        return True

    def drop(self, c, cut):
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        self.open.pop(c.sock.fileno(), None)
        if cut:
            self.st["cut"] += 1
            self.ttl.append((time.monotonic() - c.t_open) * 1000)
        c.sock.close()

    def handshake(self, c):
        try:
            c.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(c.tls, selectors.EVENT_READ, c)
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(c.tls, selectors.EVENT_WRITE, c)
            return
        except (ssl.SSLError, OSError):
            self.st["tls_errors"] += 1
            self.drop(c, True)
            return
        self.st["handshakes"] += 1
        if self.a.mode == "handshake":
            self.drop(c, False)  # and the loop opens the next one
            return
        c.state = "open"
        if self.a.mode == "nonreader":
            # It never reads: the edge's close shows as a send error (reset).
            self.sel.unregister(c.tls)
        else:
            self.sel.modify(c.tls, selectors.EVENT_READ, c)

    def on_event(self, c, ev):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.st["connect_errors"] += 1
                self.drop(c, False)
                return
            if self.a.mode == "idle":
                c.state = "open"
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
                return
            if self.a.mode == "stall":
                # the ClientHello from a TLS object over memory, sent as it is; nothing after
                out = ssl.MemoryBIO()
                hello = self.ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=self.a.server_name)
                try:
                    hello.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                try:
                    c.sock.send(out.read())
                except OSError:
                    self.drop(c, True)
                    return
                c.state = "open"
                c.answered = False
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
                return
            self.sel.unregister(c.sock)
            c.tls = self.ctx.wrap_socket(c.sock, server_hostname=self.a.server_name,
                                         do_handshake_on_connect=False)
            c.sock = c.tls  # the plain socket object is detached by the wrap
            self.sel.register(c.tls, selectors.EVENT_WRITE, c)
            c.state = "handshake"
            self.handshake(c)
            return
        if c.state == "handshake":
            self.handshake(c)
            return
        try:
            d = (c.tls or c.sock).recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except (OSError, ssl.SSLError):
            d = b""
        if not d:
            self.drop(c, True)
        elif self.a.mode == "stall" and not c.answered:
            c.answered = True
            self.st["answered"] += 1

    def tick(self, now):
        a = self.a
        for c in list(self.open.values()):
            if c.state != "open":
                continue
            if a.mode == "slowloris" and now >= c.next_send and c.pos < len(c.data):
                try:
                    c.tls.send(c.data[c.pos:c.pos + 1])
                    c.pos += 1
                    self.st["bytes_sent"] += 1
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
                except (OSError, ssl.SSLError):
                    self.drop(c, True)
                    continue
                c.next_send = now + a.interval
            elif a.mode == "nonreader":
                self.pump(c)

    def pump(self, c):
        for _ in range(64):
            c.i += 1
            m = OPTIONS.format(n=c.n, i=c.i).encode()
            try:
                k = c.tls.send(m)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                c.i -= 1
                return
            except (OSError, ssl.SSLError):
                self.drop(c, True)
                return
            self.st["bytes_sent"] += k
            if k < len(m):
                return

    def run(self):
        a = self.a
        t0 = time.monotonic()
        end = t0 + a.duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            want = a.conns - len(self.open)
            for _ in range(min(want, a.open_batch)):
                if not self.connect():
                    break
            for key, ev in self.sel.select(timeout=0.02):
                if key.data.sock.fileno() in self.open:
                    self.on_event(key.data, ev)
            self.tick(time.monotonic())
        for c in list(self.open.values()):
            self.drop(c, False)
        self.ttl.sort()
        self.st["cut_after_ms_p50"] = round(self.ttl[len(self.ttl) // 2]) if self.ttl else 0
        self.st["cut_after_ms_max"] = round(self.ttl[-1]) if self.ttl else 0
        self.st["seconds"] = round(time.monotonic() - t0, 2)
        print(json.dumps(self.st), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=("idle", "slowloris", "nonreader", "handshake", "stall",
                                    "limits"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", default="")
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--source", default="")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=1.0, help="slowloris: seconds per byte")
    p.add_argument("--rcvbuf", type=int, default=4096, help="nonreader: SO_RCVBUF")
    p.add_argument("--open-batch", type=int, default=200, help="connections opened per turn")
    a = p.parse_args()
    a.duration = min(a.duration, 3600)
    if a.mode == "limits":
        limits(a)
    else:
        Flood(a).run()


if __name__ == "__main__":
    main()
