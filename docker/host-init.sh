#!/usr/bin/env bash
# Entry point of the Docker lab's host container (docker/ebpf-host.Dockerfile). Runs under `docker run --init`
# with --privileged and a private cgroup namespace, and:
#   1. finds (or mounts) cgroup v2 and moves itself into a leaf cgroup /lab-host, so that the namespace root
#      only holds children (cgroup v2's rule for enabling controllers) and its own processes stay unmanaged;
#   2. mounts a bpffs of its own at /sys/fs/bpf (removed with the container: no pin outlives the lab);
#   3. starts the nested dockerd (no iptables, no bridge: the nested service uses --network host);
#   4. starts the agent with a policy that allows the broker tunnel and this container's DNS resolvers only
#      (with EBPF_LAB_BROKER_NAME, the broker is named by DNS instead of listed by address, and the lab's
#      resolver EBPF_LAB_DNS_SERVER, ip:port, is one more DNS endpoint: the agent's proxy learns the broker's
#      addresses from its answers), and makes the cgroup /ebpf-lab-workloads managed (enforce): every nested
#      container started with --cgroup-parent /ebpf-lab-workloads is enforced from its first instruction;
#   5. follows the agent's events into /run/ebpf-lab/events/events.ndjson (what scripts/lab/docker/status.sh
#      and the test service read);
#   6. starts the broker tunnel: 127.0.0.1:$EBPF_LAB_BROKER_TUNNEL_PORT (and [::1] where it exists) ->
#      $EBPF_LAB_BROKER_TARGET, the outer broker;
# then touches /run/ebpf-lab/ready and waits. SIGTERM stops everything it started.
set -euo pipefail

tunnel_port="${EBPF_LAB_BROKER_TUNNEL_PORT:-18081}"
broker_target="${EBPF_LAB_BROKER_TARGET:-broker:8081}"
broker_name="${EBPF_LAB_BROKER_NAME:-}"
dns_server="${EBPF_LAB_DNS_SERVER:-}"
state=/run/ebpf-lab
socket="${BROKER_EBPF_CONTROL_SOCKET:-/run/broker-interceptor-ebpf/agentd.sock}"
workloads=/ebpf-lab-workloads
pins=/sys/fs/bpf/interceptor-ebpf

# JSON log lines, like the agent's: the message escaped for a JSON string.
emit() { # level message
  local msg=${2//\\/\\\\}
  msg=${msg//\"/\\\"}
  printf '{"time":"%s","level":"%s","service":"ebpf-lab-host","msg":"%s"}\n' "$(date -u +%FT%T.%3NZ)" "$1" "${msg//$'\n'/ }"
}
log() { emit info "$*"; }
die() {
  emit error "$*"
  exit 1
}

mkdir -p "$state/events" "$(dirname "$socket")"
rm -f "$state/ready"

# 1. cgroup v2: the mount point is read from mountinfo, never assumed. A hybrid host (v1 controllers plus a
#    v2 hierarchy) shows only the v1 mounts in a container: mount v2 where runc looks for it in hybrid mode.
cg2=$(awk '$(NF-2) == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
if [[ -z "$cg2" ]]; then
  if [[ "$(stat -f -c %T /sys/fs/cgroup)" == "tmpfs" ]]; then
    cg2=/sys/fs/cgroup/unified
  else
    cg2=/run/ebpf-lab/cgroup2
  fi
  mkdir -p "$cg2"
  mount -t cgroup2 -o nsdelegate cgroup2 "$cg2" 2>/dev/null || mount -t cgroup2 cgroup2 "$cg2"
fi
log "cgroup v2 at $cg2"
mkdir -p "$cg2/lab-host"
# Every process of the container so far (this script and tini) goes to the leaf.
while read -r pid; do
  echo "$pid" >"$cg2/lab-host/cgroup.procs" 2>/dev/null || true
done <"$cg2/cgroup.procs"
if [[ -s "$cg2/cgroup.controllers" ]]; then
  read -r -a controllers <"$cg2/cgroup.controllers"
  for c in "${controllers[@]}"; do echo "+$c" >"$cg2/cgroup.subtree_control" 2>/dev/null || true; done
fi
mkdir -p "$cg2$workloads"

# 2. bpffs of our own.
if ! awk '$(NF-2) == "bpf" && $5 == "/sys/fs/bpf" {found=1} END {exit !found}' /proc/self/mountinfo; then
  mount -t bpf bpf /sys/fs/bpf
fi

children=()
# shellcheck disable=SC2317 # called by the trap below
stop() {
  log "stopping"
  # The nested containers first, at once: nothing in them needs a graceful stop, and dockerd would
  # otherwise wait out their stop timeouts.
  mapfile -t nested < <(docker ps -q 2>/dev/null)
  ((${#nested[@]})) && docker kill "${nested[@]}" >/dev/null 2>&1
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait || true
  exit 0
}
trap stop TERM INT

# 3. The nested engine. Its containers use the host network of this container, so it needs no bridge and
#    no firewall rules.
dockerd --iptables=false --ip6tables=false --bridge=none --host=unix:///var/run/docker.sock \
  >/var/log/dockerd.log 2>&1 &
children+=($!)

# 4. The agent. The policy: the broker is reached through the tunnel on loopback, DNS through this
#    container's resolvers; nothing else (no rules: everything else is DENY_DEFAULT). With a broker name, the
#    broker entry is that name on the tunnel's port (the lab's resolver answers it with the tunnel's loopback
#    addresses), and the lab's resolver is a DNS endpoint too.
resolvers=$(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ {printf "%s{\"ip\":\"%s\"}", (n++ ? "," : ""), $2}' /etc/resolv.conf)
if [[ -n "$broker_name" ]]; then
  [[ "$broker_name" =~ ^[a-z0-9-]+(\.[a-z0-9-]+)+$ ]] || die "EBPF_LAB_BROKER_NAME must be a lower-case DNS name, not '$broker_name'"
  [[ "$dns_server" =~ ^([0-9]{1,3}(\.[0-9]{1,3}){3}):([0-9]{1,5})$ ]] ||
    die "EBPF_LAB_BROKER_NAME needs EBPF_LAB_DNS_SERVER=IPv4:port (the resolver that answers it), not '$dns_server'"
  broker="{\"fqdn\":\"$broker_name\",\"port\":$tunnel_port}"
  resolvers="{\"ip\":\"${BASH_REMATCH[1]}\",\"port\":${BASH_REMATCH[3]}}${resolvers:+,$resolvers}"
else
  broker="{\"ip\":\"127.0.0.1\",\"port\":$tunnel_port},{\"ip\":\"::1\",\"port\":$tunnel_port}"
fi
printf '{"broker":[%s],"dns":[%s],"rules":[]}\n' "$broker" "$resolvers" >"$state/policy.json"
log "policy $(cat "$state/policy.json")"

export BROKER_EBPF_CONTROL_SOCKET="$socket" \
  BROKER_EBPF_CGROUP_ROOT="$cg2" \
  BROKER_EBPF_PIN_DIR="$pins" \
  BROKER_EBPF_POLICY_FILE="$state/policy.json" \
  BROKER_EBPF_FAIL_MODE="${BROKER_EBPF_FAIL_MODE:-closed}" \
  BROKER_EBPF_SOCKET_MODE="${BROKER_EBPF_SOCKET_MODE:-0660}"
interceptor-ebpf agent >/var/log/interceptor-ebpf-agent.log 2>&1 &
agent=$!
children+=("$agent")
for _ in $(seq 1 100); do
  interceptor-ebpf ctl health >/dev/null 2>&1 && break
  kill -0 "$agent" 2>/dev/null || die "the agent exited: $(tail -n 5 /var/log/interceptor-ebpf-agent.log)"
  sleep 0.1
done
interceptor-ebpf ctl health >/dev/null || die "the agent does not answer on $socket"
interceptor-ebpf ctl cgroup add "$workloads" >/dev/null || die "cannot manage $workloads"
log "agent up; $workloads managed"

# 5. The event log.
interceptor-ebpf ctl events --follow >>"$state/events/events.ndjson" 2>>/var/log/interceptor-ebpf-events.log &
children+=($!)

# 6. The broker tunnel.
socat "TCP4-LISTEN:$tunnel_port,bind=127.0.0.1,reuseaddr,fork" "TCP:$broker_target" &
children+=($!)
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
  socat "TCP6-LISTEN:$tunnel_port,bind=[::1],ipv6only=1,reuseaddr,fork" "TCP:$broker_target" &
  children+=($!)
fi

for _ in $(seq 1 300); do
  docker version >/dev/null 2>&1 && break
  sleep 0.1
done
docker version >/dev/null 2>&1 || die "the nested dockerd did not start: $(tail -n 5 /var/log/dockerd.log)"
touch "$state/ready"
log "ready: dockerd, agent, broker tunnel 127.0.0.1:$tunnel_port -> $broker_target"

# Stay up while the agent runs; a dead agent is what scripts/lab/docker/status.sh reports, and the container stops with it.
wait "$agent"
die "the agent exited: $(tail -n 5 /var/log/interceptor-ebpf-agent.log)"
