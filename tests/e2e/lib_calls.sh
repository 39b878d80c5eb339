# SPDX-License-Identifier: MIT
# Helpers for call tests with SIPp user agents (e2e t20 through the edge, and
# tests/e2e/kamailio/calls-direct.sh straight at Kamailio). Source after lib.sh and e2e_init.
# Each UA is one SIPp process with one call (-m 1) on one TCP socket through a stunnel, so the
# REGISTER and every request and response of its calls share a connection, as a Jabber client's.
# The UAs of one case run with the same -cid_str KEY: REGISTER Call-IDs are reg-USER///KEY (SIPp
# maps a Call-ID by what follows "///") and a call's Call-ID is KEY, so the callee's SIPp takes
# the incoming INVITE (or NOTIFY) as part of its one call. See tests/e2e/sipp/call_*.xml.

SIPP_DIR="$SRC/tests/e2e/sipp"
declare -A UA_PID=() UA_STOPPED=()

# ua_csv USER: $T/USER.csv with the user, a token for it (mint) and an instance number.
ua_csv() {
    local u=$1 n
    n=$(printf '%012d' "$(cksum <<<"$u" | cut -d' ' -f1)")
    printf 'SEQUENTIAL\n%s;%s;%s;\n' "$u" "$(mint "$u")" "${n: -12}" >"$T/$u.csv"
}

# ua_start NAME PORT SCENARIO USER KEY [sipp options...]: SIPp in the background as USER, to
# 127.0.0.1:PORT (a stunnel), one call of SCENARIO (tests/e2e/sipp/) with -cid_str KEY. Its
# files: $T/sipp-NAME.{out,log,err,msg} (screen, <log> actions, errors, every message).
ua_start() {
    local name=$1 port=$2 sc=$3 u=$4 key=$5
    shift 5
    [ -f "$T/$u.csv" ] || ua_csv "$u"
    : >"$T/sipp-$name.log"
    sipp -sf "$SIPP_DIR/$sc" -inf "$T/$u.csv" -t tn -max_socket 64 -m 1 -l 1 -cid_str "$key" \
        -timeout "${UA_TIMEOUT:-20}s" -timeout_error -nostdin -default_behaviors all,-bye \
        -trace_err -error_file "$T/sipp-$name.err" -trace_logs -log_file "$T/sipp-$name.log" \
        -trace_msg -message_file "$T/sipp-$name.msg" "$@" "127.0.0.1:$port" \
        >"$T/sipp-$name.out" 2>&1 &
    UA_PID[$name]=$!
    E2E_PIDS+=($!)
}

# ua_wait_registered NAME [SECONDS]: until NAME's REGISTER got its 200 (its <log> line).
ua_wait_registered() {
    local n=$(( ${2:-10} * 20 ))
    for _ in $(seq 1 "$n"); do
        grep -q '^registered ' "$T/sipp-$1.log" 2>/dev/null && return 0
        kill -0 "${UA_PID[$1]}" 2>/dev/null || break
        sleep 0.05
    done
    e2e_log "UA $1 did not register:"
    tail -n 5 "$T/sipp-$1.err" "$T/sipp-$1.out" >&2 2>/dev/null || true
    return 1
}

# ua_wait NAME: SIPp's exit status (0: its call passed its scenario; a UA ended by ua_stop
# fails); SIPp's own -timeout bounds the wait. On failure, prints SIPp's errors.
ua_wait() {
    local rc=0
    wait "${UA_PID[$1]}" || rc=$?
    [ -z "${UA_STOPPED[$1]:-}" ] || rc=143
    if [ "$rc" -ne 0 ]; then
        e2e_log "UA $1 ($rc):"
        grep -v '^$' "$T/sipp-$1.err" 2>/dev/null | tail -n 8 >&2 || true
    fi
    return "$rc"
}

# ua_run NAME PORT SCENARIO USER KEY [sipp options...]: ua_start then ua_wait.
ua_run() {
    ua_start "$@"
    ua_wait "$1"
}

# ua_stop NAME: end a UA that waits for a call that will not come (by its PID).
ua_stop() {
    UA_STOPPED[$1]=1
    kill "${UA_PID[$1]}" 2>/dev/null || true
}

# ua_pair CASE PORT UAS_SCENARIO UAC_SCENARIO: callee bob-CASE registers (and stays), then
# alice-CASE calls it; both SIPp scenarios must pass (one check each). -cid_str is CASE. A caller
# that fails ends the callee at once (it would wait for its recv timeout otherwise).
ua_pair() {
    local c=$1 port=$2 uas=$3 uac=$4 rc=0
    ua_start "b-$c" "$port" "$uas" "bob-$c" "$c"
    ua_wait_registered "b-$c" || { check "$c: callee bob-$c registers" false; ua_stop "b-$c"; return 0; }
    ua_run "a-$c" "$port" "$uac" "alice-$c" "$c" -key callee "bob-$c" || rc=$?
    check "$c: caller's scenario ($uac) passes" test "$rc" -eq 0
    [ "$rc" -eq 0 ] || ua_stop "b-$c"
    check "$c: callee's scenario ($uas) passes" ua_wait "b-$c"
}

# kam_saw CASE REGEX: Kamailio logged, for a message of that case (Call-ID CASE), a line
# matching REGEX (ERE). kam_count CASE REGEX: how many.
kam_saw() { grep -E "\{[0-9]+ [0-9]+ [A-Z]+ $1\} .*$2" "$KAM_LOG" >/dev/null; }
kam_count() { grep -cE "\{[0-9]+ [0-9]+ [A-Z]+ $1\} .*$2" "$KAM_LOG" || true; }
