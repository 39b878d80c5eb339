# SPDX-License-Identifier: MIT
# Start and stop Debian's Kamailio as the edge of the `compare` benchmark (edge.cfg + tls.cfg in
# this directory). Source it after tests/e2e/lib.sh (uses wait_port). Kamailio runs in the
# foreground (-DD -E) with its runtime dir, pid file, control socket and log under RUN, and is
# stopped by the PID it was started with; kamedge_pids lists it and all its descendants (the
# processes whose CPU the benchmark adds up).

KAMEDGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# kamedge_start RUN PKI EDGE_PORT UCM_PORT SECRET_FILE: sets KAMEDGE_PID, KAMEDGE_LOG,
# KAMEDGE_CTL. Tuning from the environment: KAMEDGE_CHILDREN (TLS workers, default 2),
# KAMEDGE_SHM (shared memory MB, default 1024), KAMEDGE_ALLOC (shm allocator, default tlsf),
# KAMEDGE_CFG (the script in this directory, default edge.cfg; calls-edge.cfg for calls).
# The secret file holds the HS256 secret (1-256 characters of [A-Za-z0-9_-], no newline).
kamedge_start() {
    local run=$1 pki=$2 port=$3 ucm=$4 secret
    secret=$(cat "$5")
    if ! [[ "$secret" =~ ^[A-Za-z0-9_-]{1,256}$ ]]; then
        echo "kamailio-edge: $5: the secret must be 1-256 characters of [A-Za-z0-9_-]" >&2
        return 1
    fi
    mkdir -p "$run"
    sed -e "s#@PKI@#$pki#g" -e "s#@UCM_PORT@#$ucm#g" "$KAMEDGE_DIR/tls.cfg" >"$run/tls.cfg"
    (
        umask 077
        sed -e "s#@EDGE_PORT@#$port#g" -e "s#@UCM_PORT@#$ucm#g" -e "s#@RUN@#$run#g" \
            -e "s#@JWT_SECRET@#$secret#g" -e "s#@TCP_CHILDREN@#${KAMEDGE_CHILDREN:-2}#g" \
            "$KAMEDGE_DIR/${KAMEDGE_CFG:-edge.cfg}" >"$run/edge.cfg"
    )
    KAMEDGE_CTL="unix:$run/kamailio_ctl"
    KAMEDGE_LOG="$run/kamailio.log"
    kamailio -DD -E -f "$run/edge.cfg" -Y "$run" -P "$run/kamailio.pid" \
        -x "${KAMEDGE_ALLOC:-tlsf}" -m "${KAMEDGE_SHM:-1024}" -M 16 \
        >"$run/kamailio.out" 2>"$KAMEDGE_LOG" &
    KAMEDGE_PID=$!
    wait_port "$port" 15 || { tail -n 30 "$KAMEDGE_LOG" >&2; return 1; }
    # The workers are forked after the listening socket is bound: ready once the control
    # process (forked last) answers.
    for _ in $(seq 1 100); do
        kamcmd -s "$KAMEDGE_CTL" core.version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "kamailio-edge: the control socket $KAMEDGE_CTL never answered" >&2
    return 1
}

# kamedge_pids: Kamailio's main PID and every descendant, one per line (bounded depth 4).
kamedge_pids() {
    local level=$KAMEDGE_PID next p
    [ -n "${KAMEDGE_PID:-}" ] || return 0
    for _ in 1 2 3 4; do
        [ -n "$level" ] || break
        next=
        for p in $level; do
            echo "$p"
            next="$next $(pgrep -P "$p" | tr '\n' ' ')"
        done
        level=$(echo $next)
    done
}

# kamedge_alive PID: the process exists and is not a zombie.
kamedge_alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# kamedge_stop: SIGTERM to the main process (it stops its children), bounded wait for each of
# them, then SIGKILL by PID for whatever is left.
kamedge_stop() {
    local p pids
    [ -n "${KAMEDGE_PID:-}" ] || return 0
    pids=$(kamedge_pids)
    kill "$KAMEDGE_PID" 2>/dev/null || true
    for p in $pids; do
        for _ in $(seq 1 50); do kamedge_alive "$p" || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    wait "$KAMEDGE_PID" 2>/dev/null || true
    KAMEDGE_PID=
}
