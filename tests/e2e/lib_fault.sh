# SPDX-License-Identifier: MIT
# Helpers of the fault tests (t14..t16; meant for the chaos suite too): raw SIP clients on file
# descriptors through stunnel (requests on a connection the test holds open), sipedge-bench runs
# in the background and their error counts, and SIGTERM with the exit status and its timing.
# Source after lib.sh.

BENCH="$BIN/sipedge-bench"

# raw_open: opens a TCP connection to stunnel (-> TLS to the edge); its fd is left in RAW_FD.
raw_open() {
    exec {RAW_FD}<>"/dev/tcp/127.0.0.1/$STUNNEL_PORT"
}

# raw_register FD USER TOKEN [CSEQ]: writes one REGISTER with a Bearer token on FD. Never fails
# (a write to a connection the edge closed is seen by the raw_status that follows: eof), and
# the write runs in a subshell, so that SIGPIPE cannot end the test.
raw_register() {
    local fd=$1 u=$2 tok=$3 cseq=${4:-1} br
    br="z9hG4bK-raw$RANDOM$RANDOM"
    (raw_register_write "$fd" "$u" "$tok" "$cseq" "$br") 2>/dev/null || true
}
raw_register_write() {
    local fd=$1 u=$2 tok=$3 cseq=$4 br=$5
    printf 'REGISTER sip:edge.example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5060;branch=%s\r\nMax-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=raw%s\r\nTo: <sip:%s@example.test>\r\nCall-ID: raw-%s-%s@test\r\nCSeq: %s REGISTER\r\nContact: <sip:%s@127.0.0.1:5060;transport=tls>\r\nExpires: 3600\r\nProxy-Authorization: Bearer token="%s"\r\nContent-Length: 0\r\n\r\n' \
        "$br" "$u" "$RANDOM" "$u" "$u" "$RANDOM$RANDOM" "$cseq" "$u" "$tok" >&"$fd"
}

# raw_status FD [SECONDS]: reads one response's head from FD and prints its status code
# ("eof" when the connection closed, "timeout" when nothing came in time).
raw_status() {
    local fd=$1 t=${2:-5} line code=""
    if ! IFS= read -r -t "$t" -u "$fd" line; then
        [ $? -gt 128 ] && echo timeout || echo eof
        return 0
    fi
    code=$(printf '%s' "$line" | awk '{print $2}')
    while IFS= read -r -t "$t" -u "$fd" line; do
        [ "${line%$'\r'}" = "" ] && break
    done
    echo "$code"
}

# raw_eof FD [SECONDS]: true once FD reads end-of-file (the edge closed it), false on timeout.
raw_eof() {
    local fd=$1 t=${2:-5} line rc
    while :; do
        rc=0
        IFS= read -r -t "$t" -u "$fd" line || rc=$?
        [ "$rc" -eq 0 ] || break
    done
    [ "$rc" -le 128 ] # 1: end of file; > 128: timed out
}

# bench_start OUT [sipedge-bench options]: runs sipedge-bench against the edge (our CA, our key)
# in the background; BENCH_PID. bench_wait waits for it (bounded by its own --duration).
bench_start() {
    local out=$1
    shift
    "$BENCH" --port "$EDGE_PORT" --ca "$PKI/ca.crt" --key "$JWT_KEY" --kid es1 "$@" >"$out" 2>&1 &
    BENCH_PID=$!
    E2E_PIDS+=($BENCH_PID)
}
bench_wait() { wait "$BENCH_PID" 2>/dev/null || true; }

# bench_err OUT NAME: the measured count of error NAME (timeout, closed, status...) in OUT.
bench_err() {
    sed -n "s/.* $2=\([0-9]*\)\/[0-9]*.*/\1/p" "$1" | head -1
}
# bench_status OUT CODE: how many measured answers had status CODE.
bench_status() {
    local n
    n=$(sed -n "s/^  status:.* $2=\([0-9]*\).*/\1/p" "$1" | head -1)
    echo "${n:-0}"
}

# term_edge: SIGTERM now; TERM_T0 (ns) is when it was sent. wait_edge_exit then sets EDGE_RC and
# EDGE_EXIT_MS (from the signal to the exit) and runs lib.sh's exit checks (0, no sanitizer).
term_edge() {
    TERM_T0=$(date +%s%N)
    kill -TERM "$EDGE_PID"
}
wait_edge_exit() {
    EDGE_RC=0
    wait "$EDGE_PID" || EDGE_RC=$?
    EDGE_EXIT_MS=$(( ($(date +%s%N) - TERM_T0) / 1000000 ))
    EDGE_PID=
    e2e_log "edge exited $EDGE_RC, $EDGE_EXIT_MS ms after SIGTERM"
    check "edge exits 0 on SIGTERM (was $EDGE_RC)" test "$EDGE_RC" -eq 0
    check "no sanitizer report from the edge" \
        bash -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$T/edge.log'"
}
