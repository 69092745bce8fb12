#!/usr/bin/env bash
# The Docker lab: a privileged Docker-in-Docker "host" that runs dockerd, the interceptor-ebpf agent and a
# broker tunnel, and the test service as a nested container (--network host) whose cgroup the agent manages
# and enforces. The broker stand-in runs as an outer container; the nested service reaches it only through
# the tunnel on the host's loopback. The policy names the broker by DNS, broker.lab.internal on the tunnel's
# port: the lab's resolver (test-service/dns-stand-in.mjs, another outer container) answers it with the
# tunnel's loopback addresses, the test service asks it (BROKER_DNS_SERVER), and the agent's DNS proxy, on the
# way, learns those addresses as the broker's.
#
#   scripts/lab/docker/up.sh [--build]     pnpm docker:ebpf-lab:up (pnpm docker:ebpf-lab rebuilds the images first)
#
# Then it verifies, and exits non-zero unless all of it holds:
#   - /health of the nested service answers on localhost:$EBPF_LAB_PORT
#   - POST /chat goes through the broker (mTLS, through the tunnel), and the agent's event for it is
#     ALLOW_BROKER with dns_name broker.lab.internal; `ctl -o json dns` lists the learned broker addresses
#   - POST /direct-call, a call around the broker, is refused by the kernel with EPERM, and the agent's
#     event for it says DENY_DEFAULT (scripts/lab/check-verdicts.mjs, on the agent's parsed event log)
# Overrides: scripts/lab/docker/common.sh. Base images for --build: NODE_IMAGE, DEBIAN_IMAGE (docker/build.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/docker/common.sh
source scripts/lab/docker/common.sh

build=0
for arg in "$@"; do
  case "$arg" in
    --build) build=1 ;;
    *) say "unknown argument '$arg' (only --build)"; exit 2 ;;
  esac
done

require_engine
start=$(date +%s)

if docker container inspect "$host_container" >/dev/null 2>&1; then
  say "$host_container already exists: run scripts/lab/docker/down.sh (pnpm docker:ebpf-lab:down) first"
  exit 1
fi

bash test-service/gen-certs.sh
missing=()
docker image inspect "$nested_image" >/dev/null 2>&1 || missing+=(test-service)
docker image inspect "$host_image" >/dev/null 2>&1 || missing+=(ebpf-host)
if ((build)); then
  EBPF_LAB_NESTED_IMAGE="$nested_image" EBPF_LAB_HOST_IMAGE="$host_image" bash docker/build.sh test-service ebpf-host
elif ((${#missing[@]})); then
  say "building ${missing[*]}"
  EBPF_LAB_NESTED_IMAGE="$nested_image" EBPF_LAB_HOST_IMAGE="$host_image" bash docker/build.sh "${missing[@]}"
fi

# From here on, a failure leaves what was created for inspection, and says how to remove it.
trap 'say "FAILED; inspect with scripts/lab/docker/status.sh, remove with scripts/lab/docker/down.sh"' ERR

say "network $lab_network, broker stand-in $broker_container"
docker network create --label "$lab_label" "$lab_network" >/dev/null
# The outer broker. It also serves the "upstream AI API" stand-in on 8082: the target of the direct call,
# which must never be reached from the nested service.
docker run -d --name "$broker_container" --label "$lab_label" \
  --network "$lab_network" --network-alias broker \
  --cap-drop NET_RAW \
  -v "$PWD/test-service/certs:/app/test-service/certs:ro" \
  -e BROKER_LOG_LEVEL=info -e UPSTREAM_PORT=8082 -e UPSTREAM_HOST=0.0.0.0 \
  "$nested_image" node test-service/broker-stand-in.mjs >/dev/null
upstream_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$lab_network\").IPAddress}}" "$broker_container")
# The lab's resolver: answers the broker's name with the tunnel's addresses inside the host container.
say "resolver $dns_container ($broker_name -> 127.0.0.1, ::1)"
docker run -d --name "$dns_container" --label "$lab_label" \
  --network "$lab_network" --network-alias dns \
  --cap-drop NET_RAW \
  -e BROKER_LOG_LEVEL=debug -e DNS_HOST=0.0.0.0 -e DNS_PORT=5300 -e "DNS_NAME=$broker_name" \
  -e DNS_A=127.0.0.1 -e DNS_AAAA=::1 -e DNS_TTL=30 \
  "$nested_image" node test-service/dns-stand-in.mjs >/dev/null
dns_server="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$lab_network\").IPAddress}}" "$dns_container"):5300"
for _ in $(seq 1 50); do
  docker logs "$dns_container" 2>&1 | grep -q 'dns stand-in listening' && break
  sleep 0.1
done

say "host container $host_container ($host_image)"
publish=()
((require_host_port)) && publish=(-p "127.0.0.1:${lab_port}:3000")
docker volume create --label "$lab_label" "$lab_volume" >/dev/null
docker run -d --name "$host_container" --label "$lab_label" \
  --privileged --cgroupns private --init \
  --network "$lab_network" "${publish[@]}" \
  -v "$lab_volume:/var/lib/docker" \
  -e "EBPF_LAB_BROKER_TUNNEL_PORT=$tunnel_port" -e "EBPF_LAB_BROKER_TARGET=broker:8081" \
  -e "EBPF_LAB_BROKER_NAME=$broker_name" -e "EBPF_LAB_DNS_SERVER=$dns_server" \
  "$host_image" >/dev/null

for _ in $(seq 1 120); do
  in_host test -e /run/ebpf-lab/ready 2>/dev/null && break
  if [[ "$(docker inspect -f '{{.State.Running}}' "$host_container")" != true ]]; then
    docker logs --tail 30 "$host_container" >&2
    say "the host container stopped"
    exit 1
  fi
  sleep 0.5
done
in_host test -e /run/ebpf-lab/ready || {
  docker logs --tail 30 "$host_container" >&2
  say "the host container is not ready after 60 s"
  exit 1
}

say "loading $nested_image into the host's engine"
docker save "$nested_image" | docker exec -i "$host_container" docker load -q >/dev/null
docker cp "$PWD/test-service/certs" "$host_container:/run/ebpf-lab/certs"

# The nested service: host network (the host container's), the managed cgroup parent, no raw sockets.
say "nested service $nested_container"
in_host docker run -d --name "$nested_container" \
  --network host --cgroup-parent /ebpf-lab-workloads --cap-drop NET_RAW \
  -v /run/ebpf-lab/certs:/app/test-service/certs:ro \
  -v /run/ebpf-lab/events:/run/ebpf-lab/events:ro \
  -e PORT=3000 \
  -e "BROKER_URL=https://${broker_name}:${tunnel_port}" -e "BROKER_DNS_SERVER=${dns_server}" \
  -e BROKER_EBPF_EVENTS_FILE=/run/ebpf-lab/events/events.ndjson \
  -e "DIRECT_CALL_URL=http://${upstream_ip}:8082/v1/chat/completions" \
  "$nested_image" >/dev/null

# The container is already enforced through its managed parent; its own entry adds the workload id to its
# events (the nearest managed ancestor's entry decides).
nested_pid=$(in_host docker inspect -f '{{.State.Pid}}' "$nested_container")
nested_cgroup=$(in_host sed -n 's/^0:://p' "/proc/$nested_pid/cgroup")
in_host interceptor-ebpf ctl cgroup add "$nested_cgroup" --mode enforce --workload-id "${BROKER_WORKLOAD_ID:-w_f73d1dc18e9c41bc89c5928d5bc67230}" >/dev/null

for _ in $(seq 1 60); do
  service GET /health >/dev/null 2>&1 && break
  sleep 0.5
done
trap - ERR

# --- verification: every line must hold, or the lab fails loudly (scripts/lab/check-verdicts.mjs) ----------
echo
echo "Docker lab: verifying enforcement on the nested service"
events_file=/run/ebpf-lab/events/events.ndjson
health=$(service GET /health 2>&1 || true)
mark=$(in_host sh -c "wc -l <$events_file")
# The broker may take a moment to load the manifest: retry the chat a few times.
for _ in 1 2 3 4 5; do
  chat=$(service POST /chat -H 'content-type: application/json' -d '{"message":"hello from the docker lab"}' 2>&1 || true)
  node scripts/lab/check-verdicts.mjs --quiet --chat "$chat" && break
  sleep 1
done
direct=$(service POST /direct-call 2>&1 || true)
dns=$(in_host interceptor-ebpf ctl -o json dns 2>&1 || true)
# The test service waited for the direct call's event, which the agent logged after the chat's: the log read
# now holds both.
if ! in_host cat "$events_file" | node scripts/lab/check-verdicts.mjs --health "$health" --chat "$chat" \
  --direct "$direct" --direct-code DENY_DEFAULT \
  --events - --after-line "$mark" --broker-port "$tunnel_port" --broker-name "$broker_name" \
  --dns "$dns" --dns-broker "$broker_name" \
  --broker-log <(docker logs "$broker_container" 2>&1); then
  echo
  say "enforcement NOT verified (see FAIL lines); the lab is left up for inspection: scripts/lab/docker/status.sh, then scripts/lab/docker/down.sh"
  exit 1
fi
echo
if ((require_host_port)); then
  try="curl localhost:${lab_port}/health          curl -XPOST localhost:${lab_port}/direct-call"
else
  try="docker exec ${host_container} curl -s localhost:3000/health   (EBPF_LAB_REQUIRE_HOST_PORT=0: not published)"
fi
cat <<MSG
Docker lab up in $(($(date +%s) - start)) s, enforcement verified.
  service   $try
  look      pnpm docker:ebpf-lab:status
            docker exec ${host_container} interceptor-ebpf ctl dns
            docker exec ${host_container} interceptor-ebpf ctl events --follow
  stop      pnpm docker:ebpf-lab:down
MSG
