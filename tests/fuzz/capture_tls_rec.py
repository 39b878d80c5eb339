#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Seeds for fuzz_tls_rec captured from real TLS 1.3 sessions: a Python ssl client and server
# (OpenSSL's own record layer, not ours) handshake through memory BIOs; once the handshake is
# over, what the client writes is recorded as it would cross the wire, with the client's
# application traffic secret from the key log. Each seed is
#   "CAPT" | suite index (0 AES-128-GCM, 1 AES-256-GCM, 2 CHACHA20-POLY1305) | secret | records
# and fuzz_tls_rec reads it with a record layer keyed by that secret.
#   capture_tls_rec.py OUT_DIR        (writes capt-<suite>-<flow> files; needs openssl(1))
import os
import ssl
import subprocess
import sys
import tempfile

SUITES = [("TLS_AES_128_GCM_SHA256", 32), ("TLS_AES_256_GCM_SHA384", 48),
          ("TLS_CHACHA20_POLY1305_SHA256", 32)]

REGISTER = (
    "REGISTER sip:ucm.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK-capt;rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=c1\r\n"
    "To: <sip:alice@example.com>\r\nCall-ID: capt@192.0.2.10\r\nCSeq: 1 REGISTER\r\n"
    "Contact: <sip:alice@192.0.2.10:50123;transport=tls>\r\nExpires: 3600\r\n"
    "Proxy-Authorization: Bearer token=\"eyJhbGciOiJFUzI1NiJ9.e30.c2ln\"\r\n"
    "Content-Length: 0\r\n\r\n").encode()

FLOWS = {
    "register": lambda c: c.write(REGISTER),
    "keepalive": lambda c: [c.write(b"\r\n\r\n") for _ in range(3)],
    "large": lambda c: c.write(REGISTER + b"x" * 18000),  # a full 16 KiB record and the rest
    "tiny": lambda c: [c.write(bytes([b])) for b in REGISTER[:40]],
    "close": lambda c: (c.write(REGISTER), c.unwrap()),  # application data, then close_notify
}


def pump(src, dst):
    data = src.read()
    if data:
        dst.write(data)
    return data


def session(suite, cert, key, flow):
    keylog = tempfile.NamedTemporaryFile(delete=False)
    keylog.close()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cctx.keylog_filename = keylog.name
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        pump(c_out, s_in)
        pump(s_out, c_in)
        if done == 2:
            break
    try:
        server.read(1)  # takes the client's Finished; nothing to read yet
    except ssl.SSLWantReadError:
        pass
    assert client.cipher()[0] == suite, (client.cipher(), suite)
    try:
        FLOWS[flow](client)
    except ssl.SSLWantReadError:  # unwrap() waits for the server's close_notify
        pass
    records = c_out.read()
    secret = None
    with open(keylog.name) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 3 and fields[0] == "CLIENT_TRAFFIC_SECRET_0":
                secret = bytes.fromhex(fields[2])
    os.unlink(keylog.name)
    return secret, records


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-days",
                        "2", "-keyout", key, "-out", cert], check=True, capture_output=True)
        for idx, (suite, hlen) in enumerate(SUITES):
            # the server's choice is OpenSSL's: leave it only the suite wanted
            conf = os.path.join(d, "openssl.cnf")
            with open(conf, "w") as f:
                f.write("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\n"
                        "system_default = sys\n[sys]\nCiphersuites = " + suite + "\n")
            for flow in FLOWS:
                env = dict(os.environ, OPENSSL_CONF=conf)
                r = subprocess.run([sys.executable, __file__, "--one", suite, cert, key, flow],
                                   env=env, check=True, capture_output=True)
                blob = r.stdout
                secret, records = blob[:hlen], blob[hlen:]
                path = os.path.join(out, f"capt-{idx}-{flow}")
                with open(path, "wb") as f:
                    f.write(b"CAPT" + bytes([idx]) + secret + records)
                print(f"{path}: {suite}, {len(records)} bytes of records")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--one":
        sec, rec = session(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
        sys.stdout.buffer.write(sec + rec)
    else:
        main()
