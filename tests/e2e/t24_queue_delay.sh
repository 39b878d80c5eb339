#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 24 (issue 15, admission under the edge's own CPU overload): a worker that gets no CPU for a
# while (the edge is stopped with SIGSTOP, as a starved or overloaded worker would be) finds
# REGISTERs that have waited in its sockets. With listen.limits.max_queue_delay_ms 150, the ones
# that waited longer than that (sent 600 ms before the edge could run) are answered 503 with a
# Retry-After of 1 to 4 s at once, without a token check and without reaching UCM
# (sipedge_registers_shed_total{reason="queue_delay"}, log worker_behind); the ones that arrived
# just before it ran again are served. The decision is each request's own wait, read from the
# kernel's receive timestamp. With the bound off (0) the same REGISTERs all go to UCM. A
# connection's first REGISTER is not shed for delay (its handshake is paid): N connections made
# before the stall, whose first REGISTERs wait it out with the early ones, are all served.
source "$(dirname "$0")/lib.sh"
e2e_init t24_queue_delay

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
REC="$T/ucm-ucm1.jsonl"
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
WORKERS=1
N=20 # clients sending early in the stall, and as many sending just before its end

TOKS=()
for i in $(seq 1 $((3 * N))); do TOKS+=("$(mint "u$i")"); done

# stall OUT: 2N TLS clients register (warm) and N more connect without registering, then the edge
# is stopped; N of the registered send a REGISTER at once ("early") and so do the N new ones
# ("first"), 600 ms later the N other registered ones send theirs ("late"), then the edge runs
# again; once answered, every client registers again ("after"). One request in flight per connection,
# as a Jabber client does (a read that takes several requests of one connection carries the
# timestamp of the newest: a lower bound of what the older ones waited). OUT gets one line per
# final answer: "PHASE STATUS RETRY-AFTER".
stall() {
    python3 - "$EDGE_PORT" "$PKI/ca.crt" "$1" "$EDGE_PID" "${TOKS[@]}" <<'PY'
import os, signal, socket, ssl, sys, time
port, ca, out, pid, toks = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
ctx = ssl.create_default_context(cafile=ca)
conns = []
for i in range(len(toks)):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                        server_hostname="localhost")
    conns.append([s, b""])

def register(i, phase):
    u, tok = f"u{i + 1}", toks[i]
    conns[i][0].sendall((f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-qd-{phase}-{i};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{u}@example.test>;tag=t{i}\r\n"
        f"To: <sip:{u}@example.test>\r\nCall-ID: qd-{i}@example.test\r\n"
        f"CSeq: {dict(warm=1, early=2, first=2, late=3, after=4)[phase]} REGISTER\r\n"
        f"Contact: <sip:{u}@127.0.0.1:5999;transport=tls>\r\n"
        f"Expires: 3600\r\nProxy-Authorization: Bearer token=\"{tok}\"\r\n"
        f"Content-Length: 0\r\n\r\n").encode())

def answers(i, want):
    """The next `want` final answers on connection i: (phase, status, retry-after)."""
    got = []
    while len(got) < want:
        s, buf = conns[i]
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"connection {i} closed")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        conns[i][1] = buf
        lines = head.decode().split("\r\n")
        status = lines[0].split(" ", 2)[1]
        if status.startswith("1"):
            continue
        phase = [l for l in lines if l.startswith("Via:")][0].split("z9hG4bK-qd-")[1].split("-")[0]
        ra = [l.split(":", 1)[1].strip() for l in lines if l.startswith("Retry-After:")]
        got.append(f"{phase} {status} {ra[0] if ra else '-'}")
    return got

res = []
n = len(toks) // 3
for i in range(2 * n):
    register(i, "warm")
for i in range(2 * n):
    res += answers(i, 1)
def stopped():  # every thread of the edge is stopped (state T), not just signalled
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True

os.kill(pid, signal.SIGSTOP)
for _ in range(200):  # at most 2 s
    if stopped():
        break
    time.sleep(0.01)
try:
    for i in range(n):
        register(i, "early")
    for i in range(2 * n, 3 * n):
        register(i, "first")
    time.sleep(0.6)
    for i in range(n, 2 * n):
        register(i, "late")
finally:
    os.kill(pid, signal.SIGCONT)
for i in range(len(toks)):
    res += answers(i, 1)
for i in range(len(toks)):  # and once it has caught up, the same clients are served again
    register(i, "after")
for i in range(len(toks)):
    res += answers(i, 1)
with open(out, "w") as f:
    f.write("\n".join(res) + "\n")
PY
}
count() { awk -v p="$2" -v s="$3" '$1 == p && $2 == s' "$1" | wc -l; }

# ---- bound 150 ms ----
export SIPEDGE_LISTEN_LIMITS_MAX_QUEUE_DELAY_MS=150
start_edge
wait_ready 10
stall "$T/on.txt"
e2e_log "answers: $(awk '{print $1 "/" $2}' "$T/on.txt" | sort | uniq -c | tr -s ' \n' ' ')"
check "every REGISTER got one final answer" test "$(wc -l <"$T/on.txt")" -eq $((8 * N))
check "warm: all 200" test "$(count "$T/on.txt" warm 200)" -eq $((2 * N))
check "early (waited 600 ms, bound 150): all 503" test "$(count "$T/on.txt" early 503)" -eq "$N"
check "every 503 says Retry-After 1 to 4" \
    test "$(awk '$2 == 503 && $3 >= 1 && $3 <= 4' "$T/on.txt" | wc -l)" -eq "$N"
check "late (arrived just before the worker ran): all 200" \
    test "$(count "$T/on.txt" late 200)" -eq "$N"
check "first REGISTERs of new connections (waited as long as early): all 200" \
    test "$(count "$T/on.txt" first 200)" -eq "$N"
check "after it caught up: all 200" test "$(count "$T/on.txt" after 200)" -eq $((3 * N))
check "UCM received only the ones served" test "$(ucm_registers)" -eq $((7 * N))
check "metrics: shed for queue_delay" \
    test "$(metric 'sipedge_registers_shed_total\{reason="queue_delay"')" -eq "$N"
check "metrics: none shed for upstream_pending" \
    test "$(metric 'sipedge_registers_shed_total\{reason="upstream_pending"')" -eq 0
check "the shed ones cost no token check" \
    test "$(metric 'sipedge_auth_results_total\{result="ok"')" -eq $((7 * N))
check "logged worker_behind with the bound" grep -q 'event=worker_behind.*limit_ms=150' "$T/edge.log"
stop_edge

# ---- bound off: the same stall, everything goes to UCM ----
export SIPEDGE_LISTEN_LIMITS_MAX_QUEUE_DELAY_MS=0
EDGE_FILE=edge-off
EDGE_PORT=
ADMIN_PORT=
start_edge
wait_ready 10
before=$(ucm_registers)
stall "$T/off.txt"
e2e_log "answers (bound off): $(awk '{print $1 "/" $2}' "$T/off.txt" | sort | uniq -c | tr -s ' \n' ' ')"
check "bound off: all $((8 * N)) got 200" test "$(awk '$2 == 200' "$T/off.txt" | wc -l)" -eq $((8 * N))
check "bound off: UCM received all" test "$(($(ucm_registers) - before))" -eq $((8 * N))
check "bound off: nothing shed" test "$(metric 'sipedge_registers_shed_total')" -eq 0
stop_edge
e2e_done
