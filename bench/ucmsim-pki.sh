#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Throwaway PKI for sipedge-ucmsim tests and benchmarks: ucmsim-pki.sh DIR.
# Makes (EC P-256, 2 days):
#   ca.pem ca.key           the CA both sides trust
#   ucm.pem ucm.key         the simulator's "Tomcat" certificate (SAN ucm.example.test, 127.0.0.1)
#   edge.pem edge.key       a client listed in the simulator's allowlist (CN/SAN edge.example.test)
#   other.pem other.key     a client of the same CA that is not listed (stranger.example.test)
#   san.pem san.key         a client whose CN (edge-cn.example.test) differs from its DNS SAN
#                           (edge-san.example.test)
#   rogue-ca.pem rogue.pem rogue.key  a client from a CA the simulator does not trust
# Writes DIR/done last; an existing DIR/done means the PKI is already there (nothing is redone).
set -euo pipefail
dir=$1
[ -f "$dir/done" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/O=sipedge test/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() { # name ca CN san usage
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/O=sipedge test/CN=$3"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$5" "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "sipedge test CA"
ca rogue-ca "rogue test CA"
leaf ucm ca ucm.example.test "DNS:ucm.example.test,IP:127.0.0.1" serverAuth
leaf edge ca edge.example.test "DNS:edge.example.test" "serverAuth,clientAuth"
leaf other ca stranger.example.test "DNS:stranger.example.test" "serverAuth,clientAuth"
leaf san ca edge-cn.example.test "DNS:edge-san.example.test" "serverAuth,clientAuth"
leaf rogue rogue-ca edge.example.test "DNS:edge.example.test" "serverAuth,clientAuth"
rm -f ./*.srl
chmod 600 ./*.key
mv ./*.pem ./*.key "$dir/"
touch "$dir/done"
