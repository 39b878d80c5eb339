#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# e2e helper: one idle TLS client that waits for the edge to close it and says how.
#   close_probe.py PORT CA VERSION READY_FILE SECONDS
# Connects (TLS VERSION 1.2 or 1.3, the edge's certificate checked against CA), sends one OPTIONS
# and reads its 200, touches READY_FILE, then waits up to SECONDS for the edge to end the
# connection. Prints "close_notify" (a TLS close_notify came before the TCP close), "unclean"
# (TCP closed or reset without it), or "timeout"; exits 0 only for close_notify.
import socket
import ssl
import sys

OPTIONS = (
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-close-probe;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@example.test>;tag=cp\r\n"
    "To: <sip:127.0.0.1>\r\n"
    "Call-ID: close-probe@example.test\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def main():
    port, ca, version, ready, secs = sys.argv[1:6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    s.sendall(OPTIONS.encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            print("FAIL: closed before the OPTIONS answer")
            return 1
        got += chunk
    if not got.startswith(b"SIP/2.0 200"):
        print("FAIL: OPTIONS answered " + got.split(b"\r\n")[0].decode(errors="replace"))
        return 1
    open(ready, "w").close()
    s.settimeout(float(secs))
    try:
        while True:
            if not s.recv(4096):
                print("close_notify")
                return 0
    except socket.timeout:
        print("timeout")
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, ssl.SSLError) as e:
        if isinstance(e, ssl.SSLZeroReturnError):
            print("close_notify")
            return 0
        print("unclean: " + type(e).__name__)
    return 1


if __name__ == "__main__":
    sys.exit(main())
