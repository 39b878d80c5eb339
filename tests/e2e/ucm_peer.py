#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# e2e helper of t19: UCM on the edge's UCM listener (mutual TLS, Python's ssl module), for a
# request whose answer must come back on the same connection.
#   ucm_peer.py PORT CA CERT KEY options EDGE_HOST
#       handshake, OPTIONS sip:EDGE_HOST -> prints the status line of the answer
#   ucm_peer.py PORT CA CERT KEY invite ROUTE USER CALLID
#       an INVITE to sip:USER@example.test with `Route: ROUTE`; prints every status line that
#       comes back on this connection until a final one, ACKs a non-2xx final
#   ucm_peer.py PORT CA NONE NONE refused       (no client certificate; CERT KEY: NONE)
#   ucm_peer.py PORT CA CERT KEY refused
#       the edge must end the connection: prints "closed" (handshake failed, or the connection
#       closed before an answer to an OPTIONS), "answered" otherwise
# Every wait is bounded (5 s each read).
import socket
import ssl
import sys


def connect(port, ca, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False  # the edge's certificate names localhost / 127.0.0.1
    if cert != "NONE":
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def request(method, ruri, callid, route=None, cseq=1, branch="z9hG4bK-ucmpeer1", to_tag=""):
    lines = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/TLS 127.0.0.1:5091;branch=%s" % branch,
        "Max-Forwards: 70",
        "From: <sip:ucm@example.test>;tag=u1",
        "To: <%s>%s" % (ruri, to_tag),
        "Call-ID: %s" % callid,
        "CSeq: %d %s" % (cseq, method),
    ]
    if route:
        lines.append("Route: %s" % route)
    if method == "INVITE":
        lines.append("Contact: <sip:ucm@127.0.0.1:5091;transport=tls>")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_messages(s, buf):
    """Yields (status line, header block) of each whole message received (bounded by timeouts)."""
    while True:
        while b"\r\n\r\n" not in buf[0]:
            data = s.recv(65536)
            if not data:
                return
            buf[0] += data
        head, buf[0] = buf[0].split(b"\r\n\r\n", 1)
        yield head.decode(errors="replace")


def main():
    port, ca, cert, key, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    if cmd == "refused":
        try:
            s = connect(port, ca, cert, key)
            s.sendall(request("OPTIONS", "sip:127.0.0.1", "refused-probe"))
            data = s.recv(65536)
        except (ssl.SSLError, OSError):
            print("closed")
            return 0
        print("answered" if data else "closed")
        return 0
    s = connect(port, ca, cert, key)
    buf = [b""]
    if cmd == "options":
        s.sendall(request("OPTIONS", "sip:" + sys.argv[6], "ucm-options"))
        for head in read_messages(s, buf):
            print(head.split("\r\n", 1)[0])
            return 0
        print("closed")
        return 1
    if cmd == "invite":
        route, user, callid = sys.argv[6], sys.argv[7], sys.argv[8]
        ruri = "sip:%s@example.test" % user
        s.sendall(request("INVITE", ruri, callid, route=route))
        for head in read_messages(s, buf):
            status = head.split("\r\n", 1)[0]
            print(status)
            code = int(status.split(" ")[1]) if status.startswith("SIP/2.0 ") else 0
            if code >= 200:
                to = [l for l in head.split("\r\n") if l.lower().startswith("to:")]
                tag = to[0][to[0].find(">") + 1:] if to else ""
                if code >= 300:  # hop by hop ACK of a non-2xx final (RFC 3261 17.1.1.3)
                    s.sendall(request("ACK", ruri, callid, route=route, to_tag=tag))
                return 0
        print("closed")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
