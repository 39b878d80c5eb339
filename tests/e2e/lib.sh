# SPDX-License-Identifier: MIT
# Shared helpers of the end-to-end tests: a throwaway PKI and signing key, real processes on
# loopback (redis-server, sipedge-ucmsim, sipedge, stunnel in front of SIPp), each stopped by the
# PID we started, and assertions that print what went wrong. Source it; call e2e_init NAME first.
# Needs: BIN (build dir with sipedge, sipedge-ucmsim, sipedge-token), SRC (source dir).

set -euo pipefail

E2E_PIDS=()
E2E_FAILS=0

e2e_log() { printf '[%s] %s\n' "$E2E_NAME" "$*" >&2; }

e2e_cleanup() {
    local p
    stop_kamailio
    for p in "${E2E_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${E2E_PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
}

# e2e_init NAME: work dir $T, PKI in $PKI, signing key $JWT_KEY (+ .pub.pem), tool paths.
e2e_init() {
    E2E_NAME=$1
    : "${BIN:?BIN must name the build directory}"
    : "${SRC:?SRC must name the source directory}"
    T="$BIN/e2e/$E2E_NAME"
    rm -rf "$T"
    mkdir -p "$T"
    PKI="$BIN/e2e/pki"
    bash "$SRC/scripts/make-pki.sh" "$PKI" ucm1.example.test ucm2.example.test
    TOKEN="$BIN/sipedge-token"
    EDGE="$BIN/sipedge"
    UCMSIM="$BIN/sipedge-ucmsim"
    JWT_KEY="$BIN/e2e/jwt-es.key"
    if [ ! -f "$JWT_KEY.pub.pem" ]; then
        "$TOKEN" keygen --type ec --out "$JWT_KEY" >/dev/null
    fi
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/hmac.key"
    trap e2e_cleanup EXIT
}

# A loopback TCP port nobody listens on now (random probe; the caller binds it soon after). Taken
# below the kernel's ephemeral range: a port in it may be the local end of some outgoing
# connection (SIPp, the edge's pool, other tests) that a connect probe cannot see.
free_port() {
    local p lo
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range || lo=32768
    [ "$lo" -gt 12000 ] || lo=32768
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

wait_port() { # wait_port PORT [SECONDS]
    local n=$(( ${2:-10} * 20 ))
    for _ in $(seq 1 "$n"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    e2e_log "nothing listens on 127.0.0.1:$1"
    return 1
}

start_redis() { # start_redis PORT
    redis-server --bind 127.0.0.1 --port "$1" --save '' --appendonly no \
        --logfile "$T/redis-$1.log" --dir "$T" &
    E2E_PIDS+=($!)
    REDIS_PID=$!
    wait_port "$1"
}

# start_ucmsim NAME PORT [flags...]: UCM stand-in that trusts our edge CA and lists our client
# certificate's name (edge.example.test) as an allowed Expressway-C unless flags say otherwise.
start_ucmsim() {
    local name=$1 port=$2
    shift 2
    "$UCMSIM" --addr 127.0.0.1 --port "$port" --cert "$PKI/ucm.crt" --key "$PKI/ucm.key" \
        --ca "$PKI/ca.crt" --node "$name" --record "$T/ucm-$name.jsonl" --record-raw "$@" \
        >"$T/ucm-$name.out" 2>"$T/ucm-$name.err" &
    E2E_PIDS+=($!)
    eval "UCM_PID_${name//[^a-zA-Z0-9]/_}=$!"
    wait_port "$port"
}

# start_kamailio PORT [CFG]: Debian's Kamailio on tls:127.0.0.1:PORT only, configured by
# tests/e2e/kamailio/CFG (default registrar.cfg, the registrar of t08; ucm.cfg is the call-routing
# UCM of t20) + its TLS profile (CFG's name with -tls.cfg when that file exists, else tls.cfg):
# UCM's certificate, a client certificate required and verified against the edge CA, Path stored
# with each contact, what it received logged. Runs in the foreground with its runtime dir, pid
# file and log ($KAM_LOG) under $T; KAM_CTL is its control socket (kamcmd -s "$KAM_CTL" ul.dump).
# stop_kamailio (also run at exit) stops it and its children.
start_kamailio() {
    local port=$1 cfg=${2:-registrar.cfg} run="$T/kamailio" tls
    tls="$SRC/tests/e2e/kamailio/${cfg%.cfg}-tls.cfg"
    [ -f "$tls" ] || tls="$SRC/tests/e2e/kamailio/tls.cfg"
    mkdir -p "$run"
    sed "s#@PKI@#$PKI#g" "$tls" >"$run/tls.cfg"
    KAM_CTL="unix:$run/kamailio_ctl"
    KAM_LOG="$T/kamailio.log"
    kamailio -DD -E -f "$SRC/tests/e2e/kamailio/$cfg" -A "KAM_PORT=$port" \
        -A "KAM_TLS_CFG=\"$run/tls.cfg\"" -A "KAM_CTL=\"$KAM_CTL\"" -Y "$run" -P "$run/kamailio.pid" \
        -m 64 -M 8 >"$T/kamailio.out" 2>"$KAM_LOG" &
    KAM_PID=$!
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$KAM_PID" 2>/dev/null || break
        sleep 0.05
    done
    e2e_log "Kamailio is not listening on 127.0.0.1:$port:"
    tail -n 30 "$KAM_LOG" >&2
    return 1
}

# stop_kamailio: SIGTERM to Kamailio's main process (it stops the children it forked), then waits
# for every one of them (bounded) and kills by PID whatever is left.
stop_kamailio() {
    local p kids
    [ -n "${KAM_PID:-}" ] || return 0
    kids=$(pgrep -P "$KAM_PID" || true)
    kill "$KAM_PID" 2>/dev/null || true
    for p in $KAM_PID $kids; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    KAM_PID=
}

# write_edge_config FILE: from variables EDGE_PORT ADMIN_PORT NODES (lines "host port name"),
# REDIS_PORT (empty: no Redis), UP_CERT UP_KEY UP_CA (default our client cert and UCM's CA),
# HANDSHAKE_TIMEOUT_MS (client TLS handshake limit, default 3000), EDGE_HOST (sip.edge_host, the
# host in the edge's Via and Path; default edge.example.test), EXTRA (raw YAML appended).
write_edge_config() {
    local f=$1 h p n
    {
        echo "workers: ${WORKERS:-2}"
        echo "listen:"
        echo "  address: 127.0.0.1"
        echo "  port: $EDGE_PORT"
        echo "  tls: {cert: ${SRV_CERT:-$PKI/server.crt}, key: ${SRV_KEY:-$PKI/server.key}}"
        echo "  limits: {handshake_timeout_ms: ${HANDSHAKE_TIMEOUT_MS:-3000}, idle_timeout_ms: 60000}"
        echo "sip:"
        echo "  edge_host: ${EDGE_HOST:-edge.example.test}"
        echo "  timer_f_ms: ${TIMER_F_MS:-4000}"
        echo "  retry_after_s: 7"
        echo "upstream:"
        echo "  nodes:"
        while read -r h p n; do
            [ -n "$h" ] || continue
            echo "    - {host: $h, port: $p, name: $n}"
        done <<<"$NODES"
        echo "  pool_size: 2"
        echo "  tls: {cert: ${UP_CERT:-$PKI/client.crt}, key: ${UP_KEY:-$PKI/client.key}, ca: ${UP_CA:-$PKI/ucm-ca.crt}}"
        echo "  keepalive_interval_ms: ${KEEPALIVE_MS:-1000}"
        echo "  connect_timeout_ms: 2000"
        echo "  backoff_min_ms: 100"
        echo "  backoff_max_ms: 1000"
        echo "auth:"
        echo "  keys:"
        echo "    - {file: ${JWT_PUB:-$JWT_KEY.pub.pem}, kid: es1}"
        if [ -n "${REDIS_PORT:-}" ]; then
            echo "  redis: {enabled: true, host: 127.0.0.1, port: $REDIS_PORT, timeout_ms: 20, hmac_key: $T/hmac.key}"
        fi
        echo "admin: {enabled: true, address: 127.0.0.1, port: $ADMIN_PORT}"
        echo "log: {level: ${LOG_LEVEL:-info}}"
        echo "${EXTRA:-}"
    } >"$f"
}

# start_edge: config from write_edge_config into $T/$EDGE_FILE.yaml (EDGE_FILE: default edge; set
# it, and empty EDGE_PORT/ADMIN_PORT, to run another edge beside the first), log $T/$EDGE_FILE.log.
start_edge() {
    local n=${EDGE_FILE:-edge}
    EDGE_PORT=${EDGE_PORT:-$(free_port)}
    ADMIN_PORT=${ADMIN_PORT:-$(free_port)}
    write_edge_config "$T/$n.yaml"
    "$EDGE" "$T/$n.yaml" >"$T/$n.out" 2>"$T/$n.log" &
    EDGE_PID=$!
    E2E_PIDS+=($EDGE_PID)
    wait_port "$EDGE_PORT" || { cat "$T/$n.log" >&2; return 1; }
    wait_port "$ADMIN_PORT"
}

# wait_ready [SECONDS]: until /readyz says 200 (at least one UCM node up).
wait_ready() {
    local n=$(( ${1:-10} * 10 ))
    for _ in $(seq 1 "$n"); do
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    e2e_log "edge never became ready:"
    curl -sS "http://127.0.0.1:$ADMIN_PORT/readyz" >&2 || true
    return 1
}

# start_stunnel: TLS client in front of SIPp: 127.0.0.1:$STUNNEL_PORT (TCP) -> edge (TLS).
# Another server: STUNNEL_TARGET (port), STUNNEL_CA (CA file), STUNNEL_HOST (name checked in its
# certificate); STUNNEL_EXTRA: raw lines added to the service (e.g. cert = / key = ).
start_stunnel() {
    STUNNEL_PORT=$(free_port)
    local conf="$T/stunnel.conf" log="$T/stunnel.log"
    if [ -f "$conf" ]; then
        conf="$T/stunnel-$STUNNEL_PORT.conf"
        log="$T/stunnel-$STUNNEL_PORT.log"
    fi
    cat >"$conf" <<EOF
foreground = quiet
pid =
output = $log
[sip]
client = yes
accept = 127.0.0.1:$STUNNEL_PORT
connect = 127.0.0.1:${STUNNEL_TARGET:-$EDGE_PORT}
CAfile = ${STUNNEL_CA:-$PKI/ca.crt}
verifyChain = yes
checkHost = ${STUNNEL_HOST:-localhost}
${STUNNEL_EXTRA:-}
EOF
    stunnel "$conf" &
    E2E_PIDS+=($!)
    wait_port "$STUNNEL_PORT"
}

mint() { # mint USER [sipedge-token mint options...]
    local u=$1
    shift
    "$TOKEN" mint --key "$JWT_KEY" --kid es1 --user "$u" --lifetime 3600 "$@"
}

# run_sipp SCENARIO CSV CALLS [RATE]: SIPp over TCP (one socket per call) through stunnel.
# Returns SIPp's status (0: every call passed its scenario).
run_sipp() {
    local sc=$1 csv=$2 calls=$3 rate=${4:-50}
    sipp -sf "$sc" -inf "$csv" -t tn -max_socket 4096 -m "$calls" -r "$rate" -l "$calls" \
        -timeout 60s -timeout_error -nostdin -trace_err -error_file "$T/sipp-errors.log" \
        "127.0.0.1:$STUNNEL_PORT" >"$T/sipp.out" 2>&1
}

# register_csv NAME STATUS CSV [STUNNEL_PORT]: one REGISTER per line of CSV (SEQUENTIAL, then
# USER;TOKEN; lines), one TLS connection each through stunnel (the one given, else the last
# started); every one must get STATUS. SIPp's output stays in $T/sipp-NAME.out.
register_csv() {
    sed -e "s/@STATUS@/$2/" -e 's/@HEADER@/CSeq:/' -e 's/@REGEXP@/REGISTER/' -e 's/@MAXFWD@/70/' \
        "$SRC/tests/e2e/sipp/register_expect.xml" >"$T/$1.xml"
    local n rc=0
    n=$(($(wc -l <"$3") - 1))
    [ -z "${4:-}" ] || STUNNEL_PORT=$4
    run_sipp "$T/$1.xml" "$3" "$n" 50 || rc=$?
    cp "$T/sipp.out" "$T/sipp-$1.out"
    [ "$rc" -eq 0 ] || tail -n 20 "$T/sipp-errors.log" >&2 2>/dev/null || true
    return "$rc"
}

# register_one NAME STATUS USER TOKEN: one REGISTER of USER with TOKEN must get STATUS.
register_one() {
    printf 'SEQUENTIAL\n%s;%s;\n' "$3" "$4" >"$T/$1.csv"
    register_csv "$1" "$2" "$T/$1.csv"
}

# start_stack: the usual set-up: redis, one UCM stand-in (ucm1, allowing our certificate), the
# edge pointing at it, ready, and stunnel for SIPp. $REC is UCM's record; ucm_registers counts
# the REGISTERs in it.
start_stack() {
    REDIS_PORT=$(free_port)
    start_redis "$REDIS_PORT"
    UCM_PORT=$(free_port)
    start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
    NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
    start_edge
    wait_ready 10
    start_stunnel
    REC="$T/ucm-ucm1.jsonl"
    touch "$REC"
}
ucm_registers() { grep -c '"method":"REGISTER"' "$REC" || true; }

# metric NAME_REGEX [ADMIN_PORT]: sum of the /metrics samples whose line matches the regex.
metric() {
    curl -fsS "http://127.0.0.1:${2:-$ADMIN_PORT}/metrics" |
        awk -v re="$1" '$0 !~ /^#/ && $0 ~ re { s += $NF } END { print s + 0 }'
}

check() { # check DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then
        e2e_log "ok: $d"
    else
        e2e_log "FAIL: $d"
        E2E_FAILS=$((E2E_FAILS + 1))
    fi
}

# stop_edge: SIGTERM, then the edge ($EDGE_PID, log $T/$EDGE_FILE.log) must drain and exit 0
# without a sanitizer report.
stop_edge() {
    [ -n "${EDGE_PID:-}" ] || return 0
    local log="$T/${EDGE_FILE:-edge}.log"
    kill -TERM "$EDGE_PID" 2>/dev/null || true
    local rc=0
    wait "$EDGE_PID" || rc=$?
    EDGE_PID=
    check "edge exits 0 on SIGTERM (was $rc)" test "$rc" -eq 0
    check "no sanitizer report from the edge" \
        bash -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$log'"
}

# The handshake cap tests (t26, t27): a UCM simulator, one worker (one cap) with CAP, clients
# that hang are not cut during the test. Then start_edge.
hs_cap_setup() { # hs_cap_setup CAP
    PROBE="$SRC/tests/e2e/tls_probe.py"
    UCM_PORT=$(free_port)
    start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
    NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
    WORKERS=1
    HANDSHAKE_TIMEOUT_MS=20000
    export SIPEDGE_LISTEN_LIMITS_MAX_HANDSHAKES_IN_FLIGHT=$1
}

# After them: the gauge back to 0, and a normal client still served.
hs_cap_after() {
    for _ in $(seq 1 50); do [ "$(metric '^sipedge_tls_handshakes_in_flight')" = 0 ] && break; sleep 0.1; done
    check "the gauge is back to 0 once the clients are gone ($(metric '^sipedge_tls_handshakes_in_flight'))" \
        test "$(metric '^sipedge_tls_handshakes_in_flight')" = 0
    check "... and none waits ($(metric '^sipedge_tls_client_hellos_waiting'))" \
        test "$(metric '^sipedge_tls_client_hellos_waiting')" = 0
    check "then a client completes its handshake and its requests are answered" \
        python3 "$PROBE" resume "$EDGE_PORT" "$PKI/ca.crt" 1.3
}

e2e_done() {
    stop_edge
    if [ "$E2E_FAILS" -ne 0 ]; then
        e2e_log "$E2E_FAILS check(s) failed; logs in $T"
        tail -n 30 "$T/edge.log" >&2 2>/dev/null || true
        exit 1
    fi
    e2e_log "all checks passed"
}
