#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make-pki.sh DIR [UCM_NAME...]: a throwaway PKI for tests, the demo and benchmarks (openssl CLI).
# Prints nothing on success; running it again with the same arguments changes nothing.
# UCM_NAME...: DNS names in the UCM certificate's SAN (default ucm1/ucm2/ucm3.example.test).
# Environment: EDGE_NAME (extra DNS SAN of the edge server cert, default edge.example.test),
# EDGE_CLIENT_NAME (CN/SAN of the edge's client cert toward UCM, default edge.example.test).
#
# Files in DIR (keys are EC P-256 unless said; each .crt is the leaf only, CAs are separate):
#   ca.crt ca.key                 edge root CA: signs the edge's server and client certificates
#   server.crt server.key         edge server cert: SAN DNS:localhost, DNS:$EDGE_NAME, IP:127.0.0.1
#   server-rsa.crt server-rsa.key the same names with an RSA-2048 key (benchmarks)
#   client.crt client.key         edge → UCM client cert: CN=SAN=$EDGE_CLIENT_NAME (clientAuth)
#   ucm-ca.crt ucm-ca.key         "UCM Tomcat" CA: signs the UCM certificates
#   ucm.crt ucm.key               UCM cert (server and client use, as CUCM's CallManager cert):
#                                 SAN DNS:<UCM_NAME...>, DNS:localhost, IP:127.0.0.1
#   untrusted-ca.crt untrusted-ca.key   a CA nobody trusts
#   untrusted.crt untrusted.key   cert from it (server+client use) with every name above
#   expired.crt expired.key       from ucm-ca, UCM's names, valid only in January 2020
#   selfsigned.crt selfsigned.key self-signed, UCM's names
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [UCM_NAME...]" >&2
    exit 2
fi
dir=$1
shift
ucm_names=("$@")
[ ${#ucm_names[@]} -gt 0 ] || ucm_names=(ucm1.example.test ucm2.example.test ucm3.example.test)
edge_name=${EDGE_NAME:-edge.example.test}
client_name=${EDGE_CLIENT_NAME:-edge.example.test}

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

stamp="v3 ${ucm_names[*]} | $edge_name | $client_name"
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    exit 0
fi
rm -f "$dir/.stamp"

tmp=$(mktemp -d "$dir/.work.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$dir"

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# ca NAME CN
ca() {
    ec_key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/O=sipedge test/CN=$2" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt" 2>/dev/null
}

# ext FILE EKU SAN
ext() {
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
        "$2" "$3" >"$1"
}

# leaf NAME CA CN EKU SAN [rsa]
leaf() {
    if [ "${6:-}" = rsa ]; then rsa_key "$1.key"; else ec_key "$1.key"; fi
    ext "$tmp/$1.ext" "$4" "$5"
    openssl req -new -key "$1.key" -subj "/O=sipedge test/CN=$3" -out "$tmp/$1.csr" 2>/dev/null
    openssl x509 -req -in "$tmp/$1.csr" -CA "$2.crt" -CAkey "$2.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 -extfile "$tmp/$1.ext" \
        -out "$1.crt" 2>/dev/null
}

ucm_san=""
for n in "${ucm_names[@]}"; do ucm_san="${ucm_san}DNS:$n,"; done
ucm_san="${ucm_san}DNS:localhost,IP:127.0.0.1"
server_san="DNS:localhost,DNS:$edge_name,IP:127.0.0.1"
client_san="DNS:$client_name"

ca ca "sipedge test root CA"
ca ucm-ca "UCM Tomcat test CA"
ca untrusted-ca "untrusted test CA"
leaf server ca "$edge_name" serverAuth "$server_san"
leaf server-rsa ca "$edge_name" serverAuth "$server_san" rsa
leaf client ca "$client_name" clientAuth "$client_san"
leaf ucm ucm-ca "${ucm_names[0]}" "serverAuth,clientAuth" "$ucm_san"
leaf untrusted untrusted-ca "$client_name" "serverAuth,clientAuth" \
    "$ucm_san,DNS:$edge_name$([ "$client_name" = "$edge_name" ] || echo ",DNS:$client_name")"

# Expired: `openssl ca` is the only 3.0 CLI that takes explicit validity dates.
ec_key expired.key
ext "$tmp/expired.ext" serverAuth "$ucm_san"
openssl req -new -key expired.key -subj "/O=sipedge test/CN=${ucm_names[0]}" \
    -out "$tmp/expired.csr" 2>/dev/null
: >"$tmp/index.txt"
cat >"$tmp/ca.cnf" <<CNF
[ca]
default_ca = c
[c]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
CNF
openssl rand -hex 8 >"$tmp/serial"
openssl ca -batch -notext -config "$tmp/ca.cnf" -cert ucm-ca.crt -keyfile ucm-ca.key \
    -startdate 20200101000000Z -enddate 20200201000000Z -extfile "$tmp/expired.ext" \
    -in "$tmp/expired.csr" -out expired.crt 2>/dev/null

ec_key selfsigned.key
openssl req -x509 -new -key selfsigned.key -subj "/O=sipedge test/CN=${ucm_names[0]}" -days 825 \
    -addext "subjectAltName=$ucm_san" -addext "extendedKeyUsage=serverAuth" \
    -out selfsigned.crt 2>/dev/null

chmod 600 ./*.key
echo "$stamp" >.stamp
