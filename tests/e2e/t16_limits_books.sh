#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 16: issue 12 items 4, 5 and 6 with real processes. Slowloris: a message trickled a byte at
# a time is cut listen.limits.message_timeout_ms after its first byte (and counted), while a
# connection that is merely idle longer than that is not. Books: a request refused for its size
# (513) is counted as a request, so requests and responses balance. Metrics that were declared
# but dead are driven and read: Redis results (miss, stored, hit after SIGHUP flushed L1, errors
# once Redis is gone), the three latency histograms, dropped messages. Errors: with UCM refusing
# connections, the log and /readyz say "Connection refused", not "No route to host". The UCM
# pool's connections are not bound by a client's output cap (listen.limits.out_queue_max 4 KiB
# here): a burst of REGISTERs all get 200. The listener's accept queue is listen.backlog long,
# capped by net.core.somaxconn, and a cap is logged with the key's name.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_fault.sh"
e2e_init t16_limits_books

MSG_TIMEOUT_MS=1500
export SIPEDGE_LISTEN_LIMITS_MESSAGE_TIMEOUT_MS=$MSG_TIMEOUT_MS
export SIPEDGE_LISTEN_LIMITS_MAX_MESSAGE=4096 SIPEDGE_LISTEN_LIMITS_MAX_LINE=2048
export SIPEDGE_LISTEN_DRAIN_TIMEOUT_MS=1000
# The smallest output cap a client may have: it must not cap the UCM pool's connections, which
# carry every client's REGISTERs (they are trunks with upstream.out_queue_max).
export SIPEDGE_LISTEN_LIMITS_OUT_QUEUE_MAX=4096
export SIPEDGE_LISTEN_BACKLOG=1000
WORKERS=1 # one L1: SIGHUP empties it and the next lookup must go to Redis
REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
start_edge
wait_ready 10
start_stunnel
m() { metric "$1"; }

# --- the listener's backlog ----------------------------------------------------------------------
# ss: a listening socket's Send-Q is its accept queue's maximum
somax=$(cat /proc/sys/net/core/somaxconn)
want=$((somax < 1000 ? somax : 1000))
got=$(ss -Hltn "sport = :$EDGE_PORT" | awk '{ print $3; exit }')
check "the listener holds listen.backlog ($got, want $want)" test "$got" = "$want"
check "a backlog within somaxconn is not logged" bash -c "! grep -q listen_backlog_capped '$T/edge.log'"
if [ "$somax" -lt 65535 ]; then # a second edge asks for more than the kernel allows
    main_pid=$EDGE_PID
    EDGE_FILE=edge-cap EDGE_PORT='' ADMIN_PORT='' SIPEDGE_LISTEN_BACKLOG=65535 start_edge
    cap_pid=$EDGE_PID
    EDGE_PID=$main_pid
    check "a backlog over somaxconn is logged with the key" \
        grep -q "event=listen_backlog_capped key=listen.backlog backlog=65535 somaxconn=$somax" \
        "$T/edge-cap.log"
    kill "$cap_pid"
    wait "$cap_pid" 2>/dev/null || true
fi
redis_result() { m "^sipedge_redis_results_total\\{result=\"$1\"\\}"; }

# --- Redis results and the latency histograms -----------------------------------------------
raw_open
a=$RAW_FD
# The edge is ready once UCM is; its Redis connection may come a moment later (a lookup then
# skips Redis): register fresh users until one lookup reached Redis (2 s at most).
for i in $(seq 1 20); do
    user=alice$i
    alice=$(mint "$user")
    raw_register "$a" "$user" "$alice" "$i"
    st=$(raw_status "$a")
    [ "$st" = 200 ] && [ "$(redis_result miss)" -ge 1 ] && break
    sleep 0.1
done
check "a REGISTER gets 200 ($st)" test "$st" = 200
check "redis: a new token's lookup is a miss ($(redis_result miss))" test "$(redis_result miss)" -ge 1
for _ in $(seq 1 20); do [ "$(redis_result stored)" -ge 1 ] && break; sleep 0.1; done
check "redis: the verified token was stored ($(redis_result stored))" test "$(redis_result stored)" -ge 1
check "auth_verify_duration observed the verification" \
    test "$(m '^sipedge_auth_verify_duration_seconds_count')" -ge 1
check "register_duration observed the REGISTER" \
    test "$(m '^sipedge_register_duration_seconds_count')" -ge 1
check "upstream_duration observed UCM's answer" \
    test "$(m '^sipedge_upstream_duration_seconds_count')" -ge 1
for _ in $(seq 1 20); do [ "$(m '^sipedge_auth_l1_entries')" -ge 1 ] && break; sleep 0.1; done
check "the L1 entries gauge counts the verified tokens ($(m '^sipedge_auth_l1_entries'))" \
    test "$(m '^sipedge_auth_l1_entries')" -ge 1
kill -HUP "$EDGE_PID"
for _ in $(seq 1 50); do grep -q 'event=reload_done' "$T/edge.log" && break; sleep 0.1; done
raw_register "$a" "$user" "$alice" 99
check "after SIGHUP (L1 emptied) the same token gets 200" test "$(raw_status "$a")" = 200
check "redis: and came from Redis: a hit ($(redis_result hit))" test "$(redis_result hit)" -ge 1

# --- dropped: a response from a client is not expected ----------------------------------------
(printf 'SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:a@example.test>;tag=2\r\nCall-ID: stray@test\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n' >&"$a") 2>/dev/null || true
for _ in $(seq 1 20); do [ "$(m 'sipedge_sip_dropped_total\{reason="via_not_ours"')" -ge 1 ] && break; sleep 0.1; done
check "a stray response (its top Via is not the edge's) is dropped and counted" \
    test "$(m 'sipedge_sip_dropped_total\{reason="via_not_ours"')" -eq 1

# --- books: a request refused for its size ------------------------------------------------------
raw_open
b=$RAW_FD
pad=$(head -c 1000 /dev/zero | tr '\0' 'x') # 6 lines of 1 KB: each fits, the whole does not ($(...) drops the last LF: put back below)
(printf 'REGISTER sip:edge.example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5060;branch=z9hG4bKbig\r\nFrom: <sip:big@example.test>;tag=1\r\nTo: <sip:big@example.test>\r\nCall-ID: big@test\r\nCSeq: 1 REGISTER\r\n%s\nContent-Length: 0\r\n\r\n' \
    "$(for i in 1 2 3 4 5 6; do printf 'X-Pad%s: %s\r\n' "$i" "$pad"; done)" >&"$b") 2>/dev/null || true
check "an oversized REGISTER gets 513" test "$(raw_status "$b")" = 513
req=$(m '^sipedge_sip_requests_total')
resp=$(m '^sipedge_sip_responses_total')
check "books: requests ($req) = final responses ($resp)" test "$req" -eq "$resp"
check "books: the 513 is among them (code 5xx)" \
    test "$(m 'sipedge_sip_responses_total\{method="REGISTER",code="5xx",source="edge"')" -eq 1

# --- slowloris -------------------------------------------------------------------------------
raw_open
idle=$RAW_FD
raw_open
slow=$RAW_FD
(printf 'REGISTER sip:edge.example.test SIP/2.0\r\n' >&"$slow") 2>/dev/null || true
t0=$(date +%s%N)
for _ in $(seq 1 40); do # one byte every 100 ms, 4 s at most
    sleep 0.1
    ( printf 'V' >&"$slow" ) 2>/dev/null || break
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 4000 ] || break
done
check "slowloris: the trickling connection is cut" raw_eof "$slow" 3
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "slowloris: after the message deadline ($ms ms >= $MSG_TIMEOUT_MS)" test "$ms" -ge "$MSG_TIMEOUT_MS"
check "slowloris: cut well before the trickle ended ($ms ms < $((MSG_TIMEOUT_MS + 2000)))" \
    test "$ms" -lt $((MSG_TIMEOUT_MS + 2000))
check "slowloris: counted as closed for message_timeout" \
    test "$(m 'sipedge_connections_closed_total\{reason="message_timeout"')" -eq 1
raw_register "$idle" carol "$(mint carol)"
check "an idle connection older than the deadline still gets 200" test "$(raw_status "$idle")" = 200
check "and was not cut" test "$(m 'sipedge_connections_closed_total\{reason="message_timeout"')" -eq 1
check "the edge logged the cut" grep -q 'event=client_message_timeout' "$T/edge.log"

check "connections accepted are counted (4 raw ones so far)" \
    test "$(m '^sipedge_connections_accepted_total')" -ge 4

# --- the UCM pool is not capped by a client's output cap -----------------------------------------
# A burst from 40 connections queues many REGISTERs (~1 KB each) on the two pool connections in
# one loop turn: over 4 KiB, which the pool refused (503 upstream_unavailable) while it shared
# the clients' cap.
bench_start "$T/burst.out" --rate 1500 --conns 40 --duration 2 --timeout-ms 4000
bench_wait
grep -E "measured|errors|status" "$T/burst.out" >&2 || true
check "burst: every REGISTER got 200 ($(bench_status "$T/burst.out" 200))" \
    test "$(bench_status "$T/burst.out" 200)" -ge 2000 -a "$(bench_status "$T/burst.out" 503)" -eq 0
check "burst: the 40 connections' first REGISTERs (at once) got 200" grep -q 'setup errors 0' "$T/burst.out"
check "burst: no upstream_unavailable logged" bash -c "! grep -q 'event=upstream_unavailable' '$T/edge.log'"
check "burst: no timeout ($(bench_err "$T/burst.out" timeout))" test "$(bench_err "$T/burst.out" timeout)" = 0

# --- Redis gone: its errors are counted ------------------------------------------------------
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
raw_register "$idle" dave "$(mint dave)" 2
check "Redis down: a REGISTER is still verified locally (200)" test "$(raw_status "$idle")" = 200
bad=$(( $(redis_result error) + $(redis_result timeout) + $(redis_result breaker_open) ))
check "Redis down: counted as error/timeout/breaker_open ($bad)" test "$bad" -ge 1

# --- UCM refuses connections ---------------------------------------------------------------------
kill "$UCM_PID_ucm1"
wait "$UCM_PID_ucm1" 2>/dev/null || true
# A reconnect may first race the dying UCM (a handshake it closes): wait for the refusal itself.
for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q 'last_error="Connection refused"' && break
    sleep 0.1
done
curl -s "http://127.0.0.1:$ADMIN_PORT/readyz" >"$T/readyz.txt" || true
check "/readyz names the refusal" grep -q 'last_error="Connection refused"' "$T/readyz.txt"
raw_register "$idle" erin "$(mint erin)" 3
check "UCM refusing: 503" test "$(raw_status "$idle")" = 503
check "the log says Connection refused" \
    grep -q 'event=upstream_unavailable error="Connection refused"' "$T/edge.log"
check "not No route to host" bash -c "! grep -q 'No route to host' '$T/edge.log'"
e2e_done
