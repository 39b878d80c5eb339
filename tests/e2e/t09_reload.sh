#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# e2e 9: SIGHUP reloads the token keys (and certificates) without a restart and without dropping
# a connection: before the reload a token signed by the new key is refused and one signed by the
# old key is accepted; after it, the other way round. The edge keeps its PID and stays ready.
source "$(dirname "$0")/lib.sh"
e2e_init t09_reload

UCM_PORT=$(free_port)
start_ucmsim ucm1 "$UCM_PORT" --allow edge.example.test
NODES="127.0.0.1 $UCM_PORT ucm1.example.test"
JWT_PUB="$T/keys.pem"
cp "$JWT_KEY.pub.pem" "$JWT_PUB"
"$TOKEN" keygen --type ec --out "$T/new.key" >/dev/null
start_edge
wait_ready 10
start_stunnel

old_token() { mint "$1"; }
new_token() { "$TOKEN" mint --key "$T/new.key" --kid es1 --user "$1" --lifetime 3600; }

check "before: old key accepted" register_one before_old 200 alice "$(old_token alice)"
check "before: new key refused" register_one before_new 407 bob "$(new_token bob)"

cp "$T/new.key.pub.pem" "$JWT_PUB"
kill -HUP "$EDGE_PID"
for _ in $(seq 1 50); do grep -q 'event=reload_done' "$T/edge.log" && break; sleep 0.1; done
check "the edge logged reload_done" grep -q 'event=reload_done' "$T/edge.log"
check "still the same process" kill -0 "$EDGE_PID"
wait_ready 10

check "after: new key accepted" register_one after_new 200 carol "$(new_token carol)"
check "after: a fresh old-key token refused" register_one after_old 407 dave "$(old_token dave)"

# A reload with a broken key file keeps the previous keys and says so.
echo "not a key" >"$JWT_PUB"
kill -HUP "$EDGE_PID"
for _ in $(seq 1 50); do grep -q 'event=reload_failed' "$T/edge.log" && break; sleep 0.1; done
check "a broken reload is refused and logged" grep -q 'event=reload_failed' "$T/edge.log"
check "the previous keys still work" register_one after_bad 200 erin "$(new_token erin)"
e2e_done
