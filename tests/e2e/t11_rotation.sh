#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 11: certificates and token keys rotated the way Kubernetes rotates a mounted Secret (a new
# timestamped directory, then the `..data` symlink renamed over), with no signal: the edge sees
# the files change (reload.watch_interval_ms), reloads once they held still, and new connections
# get the new server certificate and new tokens verify with the new key, while a connection
# opened before keeps working. A broken rotation is refused, says so in the log and in
# sipedge_reload_last_successful, and the previous set stays in use until a good one arrives.
source "$(dirname "$0")/lib.sh"
e2e_init t11_rotation

S="$T/secret" # what the kubelet mounts: files are links into ..data
mkdir -p "$S"
"$TOKEN" keygen --type ec --out "$T/new.key" >/dev/null
version() { # version NAME CRT KEY JWTPUB: a new timestamped directory, then the ..data swap
    mkdir "$S/$1"
    cp "$2" "$S/$1/tls.crt"
    cp "$3" "$S/$1/tls.key"
    cp "$4" "$S/$1/jwt.pem"
    ln -s "$1" "$S/..data_tmp"
    mv -T "$S/..data_tmp" "$S/..data"
}
version ..2026_12_04_10_00_00.1 "$PKI/server.crt" "$PKI/server.key" "$JWT_KEY.pub.pem"
for f in tls.crt tls.key jwt.pem; do ln -s "..data/$f" "$S/$f"; done

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
SRV_CERT="$S/tls.crt"
SRV_KEY="$S/tls.key"
JWT_PUB="$S/jwt.pem"
EXTRA="reload: {watch_interval_ms: 200}"
start_edge
wait_ready 10
start_stunnel

new_token() { "$TOKEN" mint --key "$T/new.key" --kid es1 --user "$1" --lifetime 3600; }
shown_cert() { python3 "$SRC/tests/e2e/tls_probe.py" cert "$EDGE_PORT" "$PKI/ca.crt"; }
der_sha256() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
reloads() { grep -c "event=$1" "$T/edge.log" || true; }
wait_log() { # wait_log EVENT COUNT: until the log has COUNT lines of EVENT (10 s at most)
    for _ in $(seq 1 100); do [ "$(reloads "$1")" -ge "$2" ] && return 0; sleep 0.1; done
    return 1
}

OLD_CERT=$(der_sha256 "$PKI/server.crt")
NEW_CERT=$(der_sha256 "$PKI/server-rsa.crt")
check "before: new connections get the first certificate" test "$(shown_cert)" = "$OLD_CERT"
check "before: old key accepted" register_one before_old 200 alice "$(mint alice)"
check "before: new key refused" register_one before_new 407 bob "$(new_token bob)"
check "the watch stays quiet while nothing changes" test "$(reloads reload_start)" -eq 0
check "loaded at start: sipedge_reload_last_successful 1" \
    test "$(metric '^sipedge_reload_last_successful')" -eq 1
T0=$(metric '^sipedge_reload_last_success_timestamp_seconds')
check "the load time is now-ish ($T0)" test $(( $(date +%s) - T0 )) -lt 120

# A client connected before the rotation, holding its connection across it.
python3 "$SRC/tests/e2e/tls_probe.py" hold "$EDGE_PORT" "$PKI/ca.crt" "$T/go" >"$T/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 1 50); do grep -q '^held' "$T/hold.out" && break; sleep 0.1; done
check "the held connection is up" grep -q "^held: $OLD_CERT" "$T/hold.out"

sleep 1 # a new second: the rotation's files get a new mtime even on coarse clocks
version ..2026_12_04_11_00_00.2 "$PKI/server-rsa.crt" "$PKI/server-rsa.key" "$T/new.key.pub.pem"
check "the rotation is picked up without a signal" wait_log reload_done 1
check "it names the trigger and the files" \
    grep -qE "event=reload_start trigger=watch files=\"?[^ ]*tls.crt" "$T/edge.log"
check "one rotation, one reload" test "$(reloads reload_start)" -eq 1
check "still the same process" kill -0 "$EDGE_PID"
check "after: new connections get the new certificate" test "$(shown_cert)" = "$NEW_CERT"
check "after: new key accepted" register_one after_new 200 carol "$(new_token carol)"
check "after: a fresh old-key token refused" register_one after_old 407 dave "$(mint dave)"
touch "$T/go"
wait "$HOLD" || true
check "the connection opened before the rotation still works" \
    grep -q "^ok: the held connection still answers: SIP/2.0 200" "$T/hold.out"
T1=$(metric '^sipedge_reload_last_success_timestamp_seconds')
check "the load time moved on ($T0 -> $T1)" test "$T1" -ge "$T0"

# A broken rotation (a key that does not match the certificate): refused, the previous set kept.
sleep 1
version ..2026_12_04_12_00_00.3 "$PKI/server.crt" "$PKI/server-rsa.key" "$T/new.key.pub.pem"
check "a broken rotation is refused and logged" wait_log reload_failed 1
check "sipedge_reload_last_successful says 0" \
    test "$(metric '^sipedge_reload_last_successful')" -eq 0
check "the previous certificate is still shown" test "$(shown_cert)" = "$NEW_CERT"
check "the previous keys still work" register_one after_bad 200 erin "$(new_token erin)"
sleep 1
check "a failed reload is not retried while nothing changes" test "$(reloads reload_start)" -eq 2

# The fix arrives: picked up, and the gauge recovers.
version ..2026_12_04_13_00_00.4 "$PKI/server.crt" "$PKI/server.key" "$JWT_KEY.pub.pem"
check "the repaired rotation is picked up" wait_log reload_done 2
check "sipedge_reload_last_successful back to 1" \
    test "$(metric '^sipedge_reload_last_successful')" -eq 1
check "the first certificate is shown again" test "$(shown_cert)" = "$OLD_CERT"
e2e_done
