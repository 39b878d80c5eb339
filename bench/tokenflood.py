#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tokenflood: hostile clients for issue 12. Each of --conns TLS connections sends REGISTERs whose
# bearer tokens are all distinct garbage of --token-bytes (a well-formed JWS header naming a real
# kid, so that the edge must check a signature, a random payload and a random signature), reads
# each answer and reconnects when the edge closes. Bounded by --duration and --max-requests;
# --rate paces the requests (all connections together).
# Prints one JSON line: requests, answers by status, connections opened, closed by the edge.
import argparse
import base64
import json
import os
import socket
import ssl
import threading
import time


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def garbage_token(header, size, sig_len):
    sig = b64(os.urandom(sig_len))
    room = size - len(header) - len(sig) - 2
    payload = b64(os.urandom(room * 3 // 4 + 3))[:room]
    if len(payload) % 4 == 1:  # not a valid base64url length: keep it decodable
        payload = payload[:-1]
    return header + b"." + payload + b"." + sig


def register(tok, n, local):
    return (
        "REGISTER sip:edge.example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {local};branch=z9hG4bK-flood{n}-{os.getpid()}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@example.test>;tag=f{n}\r\n"
        "To: <sip:flood@example.test>\r\n"
        f"Call-ID: flood-{os.getpid()}-{threading.get_ident()}-{n}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:flood@{local};transport=tls>\r\n"
        "Expires: 3600\r\n"
        f'Proxy-Authorization: Bearer token="{tok.decode()}"\r\n'
        "Content-Length: 0\r\n\r\n"
    ).encode()


def read_response(s, buf):
    """One SIP response: (status, rest of the buffer), or (None, b"") at EOF."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    clen = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() in (b"content-length", b"l"):
            clen = int(v.strip() or 0)
    while len(rest) < clen:
        d = s.recv(65536)
        if not d:
            return None, b""
        rest += d
    return int(head.split(b" ", 2)[1]), rest[clen:]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.status = {}
        self.opened = 0
        self.closed_by_edge = 0
        self.errors = 0


def worker(a, ctx, header, st, deadline, budget, source):
    n = 0
    gap = a.conns / a.rate if a.rate > 0 else 0.0  # this thread's share of --rate
    due = time.monotonic()
    while time.monotonic() < deadline:
        try:
            raw = socket.create_connection(
                (a.host, a.port), timeout=5, source_address=(source, 0) if source else None
            )
            s = ctx.wrap_socket(raw, server_hostname=a.server_name)
        except OSError:
            with st.lock:
                st.errors += 1
            time.sleep(0.05)
            continue
        with st.lock:
            st.opened += 1
        local = "%s:%d" % s.getsockname()[:2]
        buf = b""
        try:
            while time.monotonic() < deadline:
                with st.lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                    st.sent += 1
                n += 1
                if gap:
                    due += gap
                    time.sleep(max(0.0, min(due - time.monotonic(), deadline - time.monotonic())))
                s.sendall(register(garbage_token(header, a.token_bytes, a.sig_bytes), n, local))
                code, buf = read_response(s, buf)
                if code is None:
                    with st.lock:
                        st.closed_by_edge += 1
                    break
                with st.lock:
                    st.status[code] = st.status.get(code, 0) + 1
        except (OSError, ssl.SSLError):
            with st.lock:
                st.closed_by_edge += 1
        finally:
            s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--source", default="", help="local address(es) to bind, comma-separated: connections spread over them")
    p.add_argument("--conns", type=int, default=20)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=1000000)
    p.add_argument("--rate", type=float, default=0, help="requests per second, all connections (0: no pacing)")
    p.add_argument("--token-bytes", type=int, default=7700)
    p.add_argument("--kid", default="es1")
    p.add_argument("--alg", default="ES256")
    a = p.parse_args()
    a.sig_bytes = 64 if a.alg == "ES256" else 256
    header = b64(json.dumps({"alg": a.alg, "kid": a.kid, "typ": "JWT"}).encode())
    ctx = ssl.create_default_context(cafile=a.ca)
    st = Stats()
    sources = a.source.split(",")
    budget = [a.max_requests]
    deadline = time.monotonic() + min(a.duration, 3600)
    t0 = time.monotonic()
    ts = [
        threading.Thread(target=worker, args=(a, ctx, header, st, deadline, budget,
                                              sources[i % len(sources)]), daemon=True)
        for i in range(min(a.conns, 1000))
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(a.duration + 10)
    el = time.monotonic() - t0
    print(json.dumps({
        "sent": st.sent,
        "answered": sum(st.status.values()),
        "status": {str(k): v for k, v in sorted(st.status.items())},
        "connections_opened": st.opened,
        "closed_by_edge": st.closed_by_edge,
        "connect_errors": st.errors,
        "seconds": round(el, 2),
        "rate": round(st.sent / el, 1) if el > 0 else 0,
    }))


if __name__ == "__main__":
    main()
