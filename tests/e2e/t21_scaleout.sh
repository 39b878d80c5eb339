#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 21: scale-out, two edges ("pods" A and B) sharing one redis-server and one UCM stand-in, the
# way a Deployment with several replicas runs. A token verified on A is an L2 hit on B with no
# second signature check; a revocation published to the shared Redis is refused on both at once;
# A killed -9, its clients reconnect (a Service stand-in: stunnel with A then B, failover prio)
# and register on B with no new signature check; Redis killed, both pods (B and A's replacement)
# keep serving by verifying locally, and their metrics say so.
source "$(dirname "$0")/lib.sh"
e2e_init t21_scaleout

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT"
UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
REC="$T/ucm-ucm1.jsonl"
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"

pod() { # pod NAME: start an edge; its PID, SIP and admin ports in NAME_PID, NAME_SIP, NAME_ADMIN
    EDGE_FILE="edge$1"
    EDGE_PORT=
    ADMIN_PORT=
    start_edge
    wait_ready 10
    eval "$1_PID=$EDGE_PID $1_SIP=$EDGE_PORT $1_ADMIN=$ADMIN_PORT"
}
pod A
pod B

tunnel() { # tunnel NAME TARGET [NEXT]: stunnel to TARGET (then NEXT when TARGET refuses)
    STUNNEL_TARGET=$2
    STUNNEL_EXTRA=
    [ -z "${3:-}" ] || STUNNEL_EXTRA=$(printf 'connect = 127.0.0.1:%s\nfailover = prio' "$3")
    start_stunnel
    eval "$1=$STUNNEL_PORT"
}
tunnel TO_A "$A_SIP"
tunnel TO_B "$B_SIP"
tunnel SERVICE "$A_SIP" "$B_SIP"

users() { # users FILE PREFIX N: N users with fresh tokens
    {
        echo SEQUENTIAL
        for i in $(seq 1 "$3"); do echo "$2$i;$(mint "$2$i");"; done
    } >"$1"
}
verified() { metric 'sipedge_auth_results_total\{[^}]*layer="verify"' "$1"; }
l2_hits() { metric 'sipedge_auth_results_total\{result="ok",layer="l2"' "$1"; }

# 1. Verified on A, an L2 hit on B.
JTI="t21-$(date +%s)-$$"
printf 'SEQUENTIAL\nshared;%s;\n' "$(mint shared --jti "$JTI")" >"$T/shared.csv"
check "a token registers through pod A" register_csv shared_a 200 "$T/shared.csv" "$TO_A"
check "pod A checked its signature" test "$(verified "$A_ADMIN")" -eq 1
check "the same token registers through pod B" register_csv shared_b 200 "$T/shared.csv" "$TO_B"
check "pod B took it from Redis (L2 hit)" test "$(l2_hits "$B_ADMIN")" -eq 1
check "pod B checked no signature" test "$(verified "$B_ADMIN")" -eq 0

# 2. A revocation in the shared Redis reaches every worker of both pods; the token is refused
# on both although both had it in L1.
"$TOKEN" revoke --redis "127.0.0.1:$REDIS_PORT" --jti "$JTI" --ttl 3600 >"$T/revoke.out"
check "the revocation reached 4 subscribers (2 pods x 2 workers)" \
    grep -q 'subscribers=4$' "$T/revoke.out"
before=$(ucm_registers)
check "revoked: refused on pod B" register_csv revoked_b 407 "$T/shared.csv" "$TO_B"
check "revoked: refused on pod A" register_csv revoked_a 407 "$T/shared.csv" "$TO_A"
check "UCM received neither" test "$(ucm_registers)" -eq "$before"
check "both pods counted it revoked" \
    test "$(metric 'sipedge_auth_results_total\{result="revoked"' "$A_ADMIN")" -eq 1 \
    -a "$(metric 'sipedge_auth_results_total\{result="revoked"' "$B_ADMIN")" -eq 1

# 3. Twenty clients on pod A (through the Service); A dies (kill -9); they reconnect and land
# on B, which registers them from Redis without a signature check.
users "$T/twenty.csv" mover 20
a_verified=$(verified "$A_ADMIN")
check "20 clients register through the Service (pod A)" register_csv twenty_a 200 "$T/twenty.csv" "$SERVICE"
check "pod A verified the 20 tokens" test "$(verified "$A_ADMIN")" -eq $((a_verified + 20))
check "none of them went to pod B" test "$(verified "$B_ADMIN")" -eq 0
b_l2=$(l2_hits "$B_ADMIN")
kill -9 "$A_PID"
wait "$A_PID" 2>/dev/null || true
before=$(ucm_registers)
check "after kill -9 of pod A, the 20 register again through the Service" \
    register_csv twenty_b 200 "$T/twenty.csv" "$SERVICE"
check "pod B forwarded them to UCM" test "$(ucm_registers)" -eq $((before + 20))
check "pod B took all 20 from Redis" test "$(l2_hits "$B_ADMIN")" -eq $((b_l2 + 20))
check "pod B checked no signature" test "$(verified "$B_ADMIN")" -eq 0

# 4. A's replacement comes up; then Redis dies: both pods keep registering new tokens by
# verifying them locally, and count the Redis failures.
pod C
tunnel TO_C "$C_SIP"
kill -9 "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
users "$T/local_b.csv" localb 5
users "$T/local_c.csv" localc 5
check "Redis down: pod B registers 5 new tokens" register_csv local_b 200 "$T/local_b.csv" "$TO_B"
check "Redis down: pod C registers 5 new tokens" register_csv local_c 200 "$T/local_c.csv" "$TO_C"
check "pod B verified them itself" test "$(verified "$B_ADMIN")" -eq 5
check "pod C verified them itself" test "$(verified "$C_ADMIN")" -eq 5
redis_trouble='sipedge_redis_results_total\{result="(error|timeout|breaker_open)"'
check "pod B's metrics show Redis failing" test "$(metric "$redis_trouble" "$B_ADMIN")" -ge 1
check "pod C's metrics show Redis failing" test "$(metric "$redis_trouble" "$C_ADMIN")" -ge 1
check "both pods still ready" curl -fsS "http://127.0.0.1:$B_ADMIN/readyz" -o /dev/null
check "  (pod C)" curl -fsS "http://127.0.0.1:$C_ADMIN/readyz" -o /dev/null

check "no token in any log" bash -c "! grep -q 'eyJ' '$T'/edge*.log"
EDGE_PID=$B_PID
EDGE_FILE=edgeB
stop_edge
EDGE_PID=$C_PID
EDGE_FILE=edgeC
e2e_done
