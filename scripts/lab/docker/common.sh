# Sourced by scripts/lab/docker/{up,status,down}.sh: the Docker lab's names and overrides, in one place.
# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this file
#
#   EBPF_LAB_PORT                (3000)  host port where the nested service's /health answers
#   EBPF_LAB_HOST_IMAGE          (broker-interceptor/interceptor-ebpf-host:dev)
#   EBPF_LAB_HOST_CONTAINER      (interceptor-ebpf-lab-host)  also the prefix of the broker and resolver
#                                containers, the network and the volume the lab creates
#   EBPF_LAB_NESTED_IMAGE        (broker-interceptor/interceptor-node-test:dev)  the test service; also runs
#                                the outer broker stand-in
#   EBPF_LAB_NESTED_CONTAINER    (interceptor-node-test)  name of the nested container inside the host
#   EBPF_LAB_BROKER_TUNNEL_PORT  (18081) loopback port, inside the host, of the tunnel to the outer broker
#   EBPF_LAB_REQUIRE_HOST_PORT   (1)     1: `up` fails unless localhost:$EBPF_LAB_PORT answers from this
#                                machine; 0: the published port is not required (a remote or rootless
#                                engine), checks run inside the host container
export DOCKER_BUILDKIT=0

lab_port="${EBPF_LAB_PORT:-3000}"
host_image="${EBPF_LAB_HOST_IMAGE:-broker-interceptor/interceptor-ebpf-host:dev}"
host_container="${EBPF_LAB_HOST_CONTAINER:-interceptor-ebpf-lab-host}"
nested_image="${EBPF_LAB_NESTED_IMAGE:-broker-interceptor/interceptor-node-test:dev}"
nested_container="${EBPF_LAB_NESTED_CONTAINER:-interceptor-node-test}"
tunnel_port="${EBPF_LAB_BROKER_TUNNEL_PORT:-18081}"
require_host_port="${EBPF_LAB_REQUIRE_HOST_PORT:-1}"

broker_container="${host_container}-broker"
# The lab's resolver (test-service/dns-stand-in.mjs) on the lab network, port 5300: it answers the broker's
# name, which the policy and the test service use instead of an address.
dns_container="${host_container}-dns"
broker_name=broker.lab.internal
lab_network="${host_container}-net"
lab_volume="${host_container}-docker"
# Every object `up` creates carries this label, and `down` removes exactly the objects that carry it.
lab_label="io.broker-interceptor.ebpf-lab=${host_container}"

for v in lab_port tunnel_port; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]] || ((${!v} < 1 || ${!v} > 65535)); then
    echo "ebpf-lab: $v (EBPF_LAB_PORT / EBPF_LAB_BROKER_TUNNEL_PORT) must be a port 1..65535, not '${!v}'" >&2
    exit 2
  fi
done
[[ "$require_host_port" == 0 || "$require_host_port" == 1 ]] || {
  echo "ebpf-lab: EBPF_LAB_REQUIRE_HOST_PORT must be 0 or 1, not '$require_host_port'" >&2
  exit 2
}

say() { printf 'ebpf-lab: %s\n' "$*" >&2; }

require_engine() {
  docker version >/dev/null 2>&1 || {
    say "no Docker engine answers (docker version failed): start dockerd first"
    exit 1
  }
}

# Runs a command in the lab's host container.
in_host() { docker exec "$host_container" "$@"; }

# GET/POST a path of the nested service: from this machine through the published port, or from inside the
# host container when the published port is not required.
service() { # method path [curl arguments]
  if [[ "$require_host_port" == 1 ]]; then
    curl -sS --max-time 15 -X "$1" "http://127.0.0.1:${lab_port}$2" "${@:3}"
  else
    in_host curl -sS --max-time 15 -X "$1" "http://127.0.0.1:3000$2" "${@:3}"
  fi
}
