#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A client from its own source address that makes one new TLS connection at a time (connect, TLS
# 1.3 handshake, close) for --duration seconds, --interval apart, while a storm runs from another
# address: how long a newcomer waits for its handshake. Prints one JSON line: count, failures,
# p50 / p99 / max in ms (connect to handshake done). Every wait is bounded (--timeout).
import argparse
import json
import socket
import ssl
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--source", default="127.0.0.5")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    times, failures = [], 0
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout,
                                          source_address=(a.source, 0)) as s:
                with ctx.wrap_socket(s, server_hostname="localhost"):
                    times.append((time.monotonic() - t0) * 1000)
        except (OSError, ssl.SSLError):
            failures += 1
        time.sleep(max(0.0, a.interval - (time.monotonic() - t0)))
    times.sort()

    def pct(q):
        return round(times[min(len(times) - 1, int(q * len(times)))], 1) if times else None

    print(json.dumps({"count": len(times), "failures": failures, "p50_ms": pct(0.5),
                      "p99_ms": pct(0.99), "max_ms": round(times[-1], 1) if times else None}))


if __name__ == "__main__":
    main()
