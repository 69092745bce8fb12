#!/usr/bin/env bash
# Runs the test service image in the foreground (pnpm docker:test-service:run), publishing port 3000, with
# the original service's environment defaults; any of them set in this shell is passed instead:
#   PORT BROKER_URL BROKER_WORKLOAD_ID OPENAI_API_KEY BROKER_MTLS_CERT_PATH BROKER_MTLS_KEY_PATH
#   BROKER_MTLS_CA_PATH BROKER_LOG_LEVEL BROKER_FAIL_ON_MANIFEST_ERROR DIRECT_CALL_URL
# BROKER_URL's default, https://localhost:8081, is the container itself: no broker answers there, and the
# service stays up (BROKER_FAIL_ON_MANIFEST_ERROR=false) and says so in /health. A broker on this Docker host
# is https://host.docker.internal:8081. The lab's certificates (test-service/gen-certs.sh) are mounted.
# Image: EBPF_LAB_NESTED_IMAGE (broker-interceptor/interceptor-node-test:dev); host port: TEST_SERVICE_PORT (3000).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${EBPF_LAB_NESTED_IMAGE:-broker-interceptor/interceptor-node-test:dev}"
host_port="${TEST_SERVICE_PORT:-3000}"
port="${PORT:-3000}"
bash test-service/gen-certs.sh

env_args=(
  -e "PORT=$port"
  -e "BROKER_URL=${BROKER_URL-https://localhost:8081}"
  -e "BROKER_WORKLOAD_ID=${BROKER_WORKLOAD_ID:-w_f73d1dc18e9c41bc89c5928d5bc67230}"
  -e "OPENAI_API_KEY=${OPENAI_API_KEY:-int_c7baa65e33244fb8b8bcd51a7072b57f}"
  -e "BROKER_MTLS_CERT_PATH=${BROKER_MTLS_CERT_PATH:-./test-service/certs/workload.crt}"
  -e "BROKER_MTLS_KEY_PATH=${BROKER_MTLS_KEY_PATH:-./test-service/certs/workload.key}"
  -e "BROKER_MTLS_CA_PATH=${BROKER_MTLS_CA_PATH:-./test-service/certs/ca.crt}"
  -e "BROKER_LOG_LEVEL=${BROKER_LOG_LEVEL:-debug}"
  -e "BROKER_FAIL_ON_MANIFEST_ERROR=${BROKER_FAIL_ON_MANIFEST_ERROR:-false}"
)
[[ -n "${DIRECT_CALL_URL:-}" ]] && env_args+=(-e "DIRECT_CALL_URL=$DIRECT_CALL_URL")

exec docker run --rm --init --name "${TEST_SERVICE_CONTAINER:-interceptor-node-test}" \
  -p "${host_port}:${port}" \
  --cap-drop NET_RAW --security-opt no-new-privileges:true --read-only \
  --add-host host.docker.internal:host-gateway \
  -v "$PWD/test-service/certs:/app/test-service/certs:ro" \
  "${env_args[@]}" "$image"
