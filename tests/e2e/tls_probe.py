#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# e2e helper: Python's ssl module (the stdlib; OpenSSL underneath, but Python's own socket and
# session handling) against the edge's TLS port. Subcommands:
#   suites12 PORT CA SUITE...   one TLS 1.2 connection per suite: OPTIONS -> 200, cipher checked
#   resume PORT CA VERSION      two connections, the second resumes the first's session
#   alert PORT CA VERSION KIND  after the handshake send a bad record (KIND: ccs = a plaintext
#                               change_cipher_spec, tag = a record with a damaged tag); the edge
#                               must answer with the fatal alert, encrypted, before it closes
#   cert PORT CA                prints the SHA-256 of the certificate a new connection is shown
#   hold PORT CA GO             OPTIONS -> 200, then waits (30 s at most) for the file GO and
#                               sends another OPTIONS on the same connection -> 200
#   finish_close PORT CA VERSION N
#                               N connections, each: the handshake, an OPTIONS sent at once
#                               behind the client's Finished, then the socket closed without
#                               reading (the edge sees Finished, request and FIN together),
#                               32 connections at a time
#   cap PORT CA CAP N           N connections each send a ClientHello and wait (never finishing
#                               on their own): exactly CAP are answered (the edge's
#                               max_handshakes_in_flight); one answered connection closes and
#                               one finishes its handshake, and each time exactly one more
#                               waiting ClientHello is answered (--hold READY GO: once the
#                               cap is reached, create READY and wait for GO before going on);
#                               each from its own source address (127.0.0.10 on)
#   share PORT CA CAP N         the per-source share of that cap (CAP >= 2, below 32, so that one
#                               handshake in flight makes a source heavy): N hanging ClientHellos
#                               from 127.0.0.2 get CAP - CAP/2 answers; CAP/2 from other sources
#                               all of theirs, up to the cap; one more source waits; it is answered
#                               ahead of 127.0.0.2's queue when a handshake ends; once 127.0.0.2's
#                               answered connections close, none more (8 still wait: heavy, and
#                               half the cap is in flight); once the others close, CAP/2 - 1
#   fair PORT CA CAP            the same cap (below 32) held by CAP sources; 3 ClientHellos from
#                               127.0.0.3 then 1 from 127.0.0.41 wait; when a handshake ends the
#                               lone source's is answered, not the first queued (a source with
#                               more than one waiting goes last); below half the cap, the 3
#   deadline PORT CA TIMEOUT_MS with a cap of 1 and that handshake deadline: a first ClientHello
#                               is answered and its client never goes on; a second one (another
#                               source, 0.3 s later) waits at the cap until the edge cuts the first
#                               at its deadline, and is answered with less than 1 s left of the
#                               deadline counted from its accept; its client finishes 1 s after
#                               that one would have passed, and its OPTIONS is answered 200: the
#                               deadline restarts when the ClientHello is answered; a third one
#                               (0.3 s after the second) is never answered: cut at its deadline
# Prints one line per check; exits 1 on the first failure. Every wait is bounded (5 s, or the
# deadline under test + 5 s).
import concurrent.futures
import hashlib
import os
import socket
import ssl
import sys
import time

OPTIONS = (
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-probe-{n};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@example.test>;tag=p{n}\r\n"
    "To: <sip:127.0.0.1>\r\n"
    "Call-ID: probe-{n}@example.test\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def context(ca, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = True
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    return ctx


def options(s, n):
    s.sendall(OPTIONS.format(n=n).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def suites12(port, ca, suites):
    for i, suite in enumerate(suites):
        ctx = context(ca, "1.2")
        ctx.set_ciphers(suite)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                line = options(s, i)
                got = s.cipher()[0]
                if got != suite or not line.startswith("SIP/2.0 200"):
                    fail(f"TLS 1.2 {suite}: cipher {got}, answer {line!r}")
                print(f"ok: python TLS 1.2 {suite}: {line}")


def resume(port, ca, version):
    ctx = context(ca, version)
    session = None
    for round in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                line = options(s, 100 + round)  # TLS 1.3: the ticket arrives with the answer
                if not line.startswith("SIP/2.0 200"):
                    fail(f"TLS {version} round {round}: answer {line!r}")
                if round == 1 and not s.session_reused:
                    fail(f"TLS {version}: the second connection did not resume")
                session, cipher = s.session, s.cipher()[0]
    print(f"ok: python TLS {version}: resumed, {cipher}")


def alert(port, ca, version, kind):
    """Handshake through memory BIOs so that raw bytes can be injected after it."""
    ctx = context(ca, version)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)

    def pump_out():
        data = out.read()
        if data:
            raw.sendall(data)

    def pump_in():
        data = raw.recv(65536)
        if not data:
            inc.write_eof()
        else:
            inc.write(data)
        return data

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump_out()
            if not pump_in():
                fail("closed during the handshake")
    pump_out()
    line = None
    obj.write(OPTIONS.format(n=7).encode())
    pump_out()
    data = b""
    while b"\r\n\r\n" not in data:  # the edge's answer (and its ticket): it runs on its layer now
        try:
            data += obj.read(4096)
        except ssl.SSLWantReadError:
            if not pump_in():
                fail("closed before answering")
    line = data.split(b"\r\n", 1)[0].decode()
    if not line.startswith("SIP/2.0 200"):
        fail(f"answer {line!r}")
    if kind == "ccs":
        raw.sendall(bytes([20, 3, 3, 0, 1, 1]))
        want = "UNEXPECTED_MESSAGE"
    else:
        obj.write(OPTIONS.format(n=8).encode())
        rec = bytearray(out.read())
        rec[-1] ^= 0x01
        raw.sendall(bytes(rec))
        want = "BAD_RECORD_MAC"
    for _ in range(50):
        try:
            obj.read(4096)
        except ssl.SSLWantReadError:
            if not pump_in():
                fail(f"TLS {version} {kind}: the edge closed without an alert")
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError) as e:
            fail(f"TLS {version} {kind}: closed without an alert ({e})")
        except ssl.SSLError as e:
            if want in str(e).upper():
                print(f"ok: python TLS {version} {kind}: the edge sent its alert: {e.reason}")
                return
            fail(f"TLS {version} {kind}: {e}")
    fail(f"TLS {version} {kind}: no alert")


def cert(port, ca):
    ctx = context(ca, "1.3")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())


def hold(port, ca, go):
    ctx = context(ca, "1.3")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            line = options(s, 200)
            if not line.startswith("SIP/2.0 200"):
                fail(f"hold: first answer {line!r}")
            print("held: " + hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest(),
                  flush=True)
            for _ in range(300):
                if os.path.exists(go):
                    break
                time.sleep(0.1)
            else:
                fail("hold: never told to go on")
            line = options(s, 201)
            if not line.startswith("SIP/2.0 200"):
                fail(f"hold: answer after the wait {line!r}")
            print("ok: the held connection still answers: " + line)


def finish_close(port, ca, version, n):
    ctx = context(ca, version)

    def one(i):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(OPTIONS.format(n=1000 + i).encode())
                s.shutdown(socket.SHUT_RDWR)  # a FIN, no close_notify

    # 32 at a time: a busy edge reads a Finished, its request and the FIN in one turn
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(one, range(n)))
    print(f"ok: python TLS {version}: {n} connections finished, sent an OPTIONS and closed")


class Hello:
    """A TLS 1.3 client driven by hand over its own socket: a ClientHello now, the rest on demand."""

    def __init__(self, ctx, port, src="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inb, self.outb, server_hostname="localhost")
        self.answered = False
        self.step()

    def step(self):
        try:
            self.tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        out = self.outb.read()
        if out:
            self.sock.sendall(out)
        return done

    def poll(self):
        """Reads what the edge sent (without waiting); True once anything came."""
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            data = None
        finally:
            self.sock.setblocking(True)
        if data:
            self.inb.write(data)
            self.answered = True
        return self.answered


def answered_after(conns, want, what):
    """Waits (5 s at most) until `want` of `conns` were answered; fails on more or fewer."""
    deadline = time.time() + 5
    while time.time() < deadline:
        got = sum(c.poll() for c in conns)
        if got >= want:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # one too many would show by now
    got = sum(c.poll() for c in conns)
    if got != want:
        fail(f"{what}: {got} ClientHellos answered, expected {want}")
    print(f"ok: {what}: {got} of {len(conns)} ClientHellos answered")


def finish(c, what):
    """Completes the handshake of an answered Hello (5 s at most)."""
    deadline = time.time() + 5
    while not c.step():  # the server's whole flight may take more than one read
        if time.time() > deadline:
            fail(f"{what}: the answered handshake did not complete")
        time.sleep(0.05)
        c.poll()


def cap(port, ca, limit, n, hold=None):
    ctx = context(ca, "1.3")
    conns = [Hello(ctx, port, f"127.0.0.{10 + i}") for i in range(n)]
    answered_after(conns, limit, f"cap {limit}")
    if hold:  # tell the caller the cap is reached, wait (10 s at most) until it has looked
        open(hold[0], "w").close()
        deadline = time.time() + 10
        while not os.path.exists(hold[1]) and time.time() < deadline:
            time.sleep(0.05)
    # one answered client goes away: its slot is free
    gone = next(c for c in conns if c.answered)
    gone.sock.close()
    conns.remove(gone)
    answered_after(conns, limit + 0, "one answered client closed")
    # one finishes its handshake: the edge completes it, and its slot is free too
    finish(next(c for c in conns if c.answered), "cap")
    answered_after(conns, limit + 1, "one answered client finished its handshake")
    for c in conns:
        c.sock.close()


def share(port, ca, limit, n):
    ctx = context(ca, "1.3")
    heavy = limit - limit // 2
    flood = [Hello(ctx, port, "127.0.0.2") for _ in range(n)]
    answered_after(flood, heavy, f"one source, cap {limit}")
    others = [Hello(ctx, port, f"127.0.0.{20 + i}") for i in range(limit // 2)]
    answered_after(others, limit // 2, "other sources meanwhile, up to the cap")
    late = Hello(ctx, port, "127.0.0.40")
    answered_after([late], 0, "one more source at the cap")
    finish(others.pop(), "share")
    answered_after([late], 1, "it, once another source's handshake ended")
    answered_after(flood, heavy, "127.0.0.2, meanwhile")
    for c in [c for c in flood if c.answered]:
        c.sock.close()
        flood.remove(c)
    # none in flight, but 8 waiting: still heavy, and half the cap is in flight
    answered_after(flood, 0, "127.0.0.2, once its answered connections closed")
    for c in others:
        c.sock.close()
    answered_after(flood, heavy - 1, "127.0.0.2, once the others closed (1 other in flight)")
    for c in flood + [late]:
        c.sock.close()


def fair(port, ca, limit):
    ctx = context(ca, "1.3")
    held = [Hello(ctx, port, f"127.0.0.{50 + i}") for i in range(limit)]
    answered_after(held, limit, f"cap {limit}, one source each")
    flood = [Hello(ctx, port, "127.0.0.3") for _ in range(3)]
    time.sleep(0.3)  # queued before the next one
    late = Hello(ctx, port, "127.0.0.41")
    answered_after(flood + [late], 0, "at the cap: 3 from one source, then 1 from another")
    finish(held.pop(), "fair")
    answered_after([late], 1, "a handshake ended: the lone source's ClientHello goes first")
    answered_after(flood, 0, "127.0.0.3's, meanwhile")
    for c in held:
        c.sock.close()
    answered_after(flood, 3, "below half the cap: 127.0.0.3's")
    for c in flood + [late]:
        c.sock.close()


def request(c, n, what):
    """Sends an OPTIONS over an established Hello and waits (5 s at most) for its 200."""
    c.tls.write(OPTIONS.format(n=n).encode())
    try:
        c.sock.sendall(c.outb.read())
    except OSError as e:
        fail(f"{what}: the edge closed the connection: {e}")
    got, deadline = b"", time.time() + 5
    while b"\r\n\r\n" not in got and time.time() < deadline:
        c.poll()
        try:
            got += c.tls.read(65536)
        except ssl.SSLWantReadError:
            time.sleep(0.05)
        except (ssl.SSLError, OSError) as e:
            fail(f"{what}: the connection failed: {e}")
    if not got.startswith(b"SIP/2.0 200"):
        fail(f"{what}: no 200 to the OPTIONS: {got[:60]!r}")
    print(f"ok: {what}: OPTIONS answered 200")


def closed_by_edge(c, within, what):
    """Waits (`within` s at most) for the edge to close c's socket."""
    c.sock.settimeout(within)
    try:
        while c.sock.recv(65536):
            c.answered = True
    except socket.timeout:
        fail(f"{what}: still open after {within:.1f} s")
    except OSError:
        pass  # reset: closed as well
    print(f"ok: {what}: closed by the edge")


def deadline(port, ca, timeout_ms):
    ctx = context(ca, "1.3")
    t = timeout_ms / 1000
    first = Hello(ctx, port, "127.0.0.60")
    answered_after([first], 1, "cap 1: the first ClientHello")
    time.sleep(0.3)
    second = Hello(ctx, port, "127.0.0.61")
    accepted = time.time()
    time.sleep(0.3)
    third = Hello(ctx, port, "127.0.0.62")
    answered_after([second, third], 0, "a second and a third ClientHello at the cap")
    closed_by_edge(first, t + 2, "the first, at its deadline")
    end = time.time() + 5
    while not second.poll():
        if time.time() > end:
            fail("the second ClientHello was not answered once the first was cut")
        time.sleep(0.02)
    left = accepted + t - time.time()
    if left > 1.0:
        fail(f"the second was answered with {left:.2f} s of its first deadline left (wanted < 1 s)")
    print(f"ok: the second ClientHello answered with {max(left, 0):.2f} s left since its accept")
    closed_by_edge(third, t, "the third, behind the second, unanswered at its deadline")
    if third.answered:
        fail("the third ClientHello was answered")
    # the second's deadline counted from its accept is 0.7 s past; counted from its answer not
    time.sleep(max(0.0, accepted + t + 0.7 - time.time()))
    finish(second, "deadline")
    request(second, 1, "the second, 0.7 s past the deadline counted from its accept")
    second.sock.close()


def main():
    cmd, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if cmd == "suites12":
        suites12(port, ca, sys.argv[4:])
    elif cmd == "resume":
        resume(port, ca, sys.argv[4])
    elif cmd == "alert":
        alert(port, ca, sys.argv[4], sys.argv[5])
    elif cmd == "cert":
        cert(port, ca)
    elif cmd == "hold":
        hold(port, ca, sys.argv[4])
    elif cmd == "cap":
        files = sys.argv[7:9] if len(sys.argv) >= 9 and sys.argv[6] == "--hold" else None
        cap(port, ca, int(sys.argv[4]), int(sys.argv[5]), files)
    elif cmd == "share":
        share(port, ca, int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "fair":
        fair(port, ca, int(sys.argv[4]))
    elif cmd == "deadline":
        deadline(port, ca, int(sys.argv[4]))
    elif cmd == "finish_close":
        finish_close(port, ca, sys.argv[4], int(sys.argv[5]))
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main()
