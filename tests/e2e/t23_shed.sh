#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 23 (issue 15, admission): UCM answers each REGISTER only after 3 s; 20 REGISTERs arrive at
# once on one worker whose upstream.max_pending is 5. The 5 first wait for UCM and get its 200;
# the 15 others get 503 with a Retry-After of 1 to 4 s at once, without a token check
# (sipedge_registers_shed_total, log upstream_saturated), and UCM never sees them. When UCM has
# answered, there is room again.
source "$(dirname "$0")/lib.sh"
e2e_init t23_shed

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test --delay-ms 3000
REC="$T/ucm-ucm1.jsonl"
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=1
TIMER_F_MS=8000
export SIPEDGE_UPSTREAM_MAX_PENDING=5
start_edge
wait_ready 10

burst() { # burst N FILE: N REGISTERs (user uN, valid tokens) sent at once on one TLS connection;
    # FILE gets one line per final answer: "STATUS MS RETRY-AFTER"
    local toks=()
    for i in $(seq 1 "$1"); do toks+=("$(mint "u$i")"); done
    python3 - "$EDGE_PORT" "$PKI/ca.crt" "$2" "${toks[@]}" <<'PY'
import socket, ssl, sys, time
port, ca, out, toks = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                    server_hostname="localhost")
t0 = time.monotonic()
msgs = []
for i, tok in enumerate(toks, 1):
    msgs.append((f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                 f"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-shed-{i};rport\r\n"
                 f"Max-Forwards: 70\r\nFrom: <sip:u{i}@example.test>;tag=t{i}\r\n"
                 f"To: <sip:u{i}@example.test>\r\nCall-ID: shed-{i}@example.test\r\n"
                 f"CSeq: 1 REGISTER\r\nContact: <sip:u{i}@127.0.0.1:5999;transport=tls>\r\n"
                 f"Expires: 3600\r\nProxy-Authorization: Bearer token=\"{tok}\"\r\n"
                 f"Content-Length: 0\r\n\r\n").encode())
s.sendall(b"".join(msgs))
data, lines = b"", []
while len(lines) < len(toks):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    while b"\r\n\r\n" in data:
        head, data = data.split(b"\r\n\r\n", 1)
        text = head.decode()
        status = text.split(" ", 2)[1]
        if status.startswith("1"):
            continue
        ra = [l.split(":", 1)[1].strip() for l in text.split("\r\n") if l.startswith("Retry-After:")]
        lines.append(f"{status} {int((time.monotonic() - t0) * 1000)} {ra[0] if ra else '-'}")
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

burst 20 "$T/burst.txt"
e2e_log "answers: $(sort "$T/burst.txt" | awk '{print $1}' | uniq -c | tr -s ' \n' ' ')"
check "20 final answers" test "$(wc -l <"$T/burst.txt")" -eq 20
check "5 REGISTERs waited for UCM and got its 200 (after its 3 s)" \
    test "$(awk '$1 == 200 && $2 >= 2900' "$T/burst.txt" | wc -l)" -eq 5
check "15 got 503 at once (under 1 s)" test "$(awk '$1 == 503 && $2 < 1000' "$T/burst.txt" | wc -l)" -eq 15
check "every 503 says Retry-After 1 to 4" \
    test "$(awk '$1 == 503 && $3 >= 1 && $3 <= 4' "$T/burst.txt" | wc -l)" -eq 15
check "UCM received only the 5" test "$(ucm_registers)" -eq 5
check "metrics: 15 shed" test "$(metric '^sipedge_registers_shed_total')" -eq 15
check "the 15 cost no token check (5 verified)" \
    test "$(metric 'sipedge_auth_results_total\{result="ok"')" -eq 5
check "logged upstream_saturated with the limit" grep -q 'event=upstream_saturated.*limit=5' "$T/edge.log"
burst 3 "$T/again.txt"
check "after UCM answered, there is room again: 3 x 200" \
    test "$(awk '$1 == 200' "$T/again.txt" | wc -l)" -eq 3
e2e_done
