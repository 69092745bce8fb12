#!/usr/bin/env bash
# Generates the lab's throwaway PKI with openssl, once: a CA, the broker stand-in's server certificate and the
# test service's workload (client) certificate. Existing files are kept while they are valid for another day.
#
#   test-service/gen-certs.sh [DIR]      # default DIR: test-service/certs (git-ignored)
#
# Files: ca.crt ca.key broker.crt broker.key workload.crt workload.key. The workload certificate's CN is the
# workload id (BROKER_WORKLOAD_ID, default w_f73d1dc18e9c41bc89c5928d5bc67230); the broker checks it against the
# x-broker-workload-id header. The server certificate names localhost, broker, host.docker.internal,
# broker.lab.internal (the name the labs' DNS stand-in answers), 127.0.0.1 and ::1; certificates made before
# a name was added are made again.
# These keys protect nothing but the lab: the leaf keys are readable by all (mode 0644) so that a container
# running as a non-root user can read them from a bind mount; the CA key is 0600.
set -euo pipefail

dir="${1:-$(dirname "$0")/certs}"
workload_id="${BROKER_WORKLOAD_ID:-w_f73d1dc18e9c41bc89c5928d5bc67230}"
days=365

valid() {
  [[ -s "$dir/$1.crt" && -s "$dir/$1.key" ]] && openssl x509 -in "$dir/$1.crt" -noout -checkend 86400 >/dev/null 2>&1
}

mkdir -p "$dir"
if valid ca && valid broker && valid workload &&
  openssl x509 -in "$dir/broker.crt" -noout -ext subjectAltName 2>/dev/null | grep -q 'DNS:broker.lab.internal' &&
  [[ "$(openssl x509 -in "$dir/workload.crt" -noout -subject -nameopt multiline | awk -F' = ' '/commonName/ {print $2}')" == "$workload_id" ]]; then
  exit 0
fi

echo "gen-certs: generating the lab CA, broker and workload certificates in $dir" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days "$days" -subj "/CN=interceptor-ebpf lab CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$tmp/ca.crt"

leaf() { # name subject extensions
  key "$tmp/$1.key"
  openssl req -new -key "$tmp/$1.key" -subj "$2" -out "$tmp/$1.csr"
  printf '%s\n' "$3" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -sha256 \
    -days "$days" -extfile "$tmp/$1.ext" -out "$tmp/$1.crt" 2>/dev/null
}

leaf broker "/CN=broker" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:broker,DNS:host.docker.internal,DNS:broker.lab.internal,IP:127.0.0.1,IP:::1"

leaf workload "/CN=$workload_id" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:broker-workload:$workload_id"

openssl verify -CAfile "$tmp/ca.crt" "$tmp/broker.crt" "$tmp/workload.crt" >/dev/null
for name in ca broker workload; do
  install -m 0644 "$tmp/$name.crt" "$dir/$name.crt"
done
install -m 0600 "$tmp/ca.key" "$dir/ca.key"
install -m 0644 "$tmp/broker.key" "$dir/broker.key"
install -m 0644 "$tmp/workload.key" "$dir/workload.key"
