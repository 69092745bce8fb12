#!/usr/bin/env bash
# The native lab (pnpm lab): no Docker. As root on a Linux host with BTF and cgroup v2, it
#   1. builds the agent (cargo, release) and the lab's certificates (test-service/gen-certs.sh, once);
#   2. creates its own cgroup tree (scripts/lab/native/common.sh lists everything it creates) and starts the
#      agent with its cgroup root there and a policy that allows the broker, named broker.lab.internal, and
#      the DNS resolvers only (the lab's resolver on 127.0.0.1:$LAB_DNS_PORT and those of /etc/resolv.conf);
#   3. starts the lab's resolver (test-service/dns-stand-in.mjs: broker.lab.internal -> 127.0.0.1, ::1), the
#      broker stand-in (mTLS on port $LAB_BROKER_PORT, and the "upstream" stand-in on
#      127.0.0.1:$LAB_UPSTREAM_PORT) and the agent's event log;
#   4. starts the test service as nobody, without capabilities, in a managed cgroup in enforce mode, with
#      BROKER_URL=https://broker.lab.internal:$LAB_BROKER_PORT resolved through the lab's resolver
#      (BROKER_DNS_SERVER): the agent's DNS proxy sees the answer and learns the broker's addresses;
#   5. verifies, and exits non-zero unless all of it holds: /health answers; a chat goes through the broker
#      and the agent reported ALLOW_BROKER with dns_name broker.lab.internal for it; `ctl dns` lists the
#      learned broker addresses; a direct call to the upstream fails with EPERM and the agent reported
#      DENY_DEFAULT for it (scripts/lab/check-verdicts.mjs, on the agent's parsed event log).
# It leaves the lab running on localhost:$LAB_PORT: pnpm lab:status to look, pnpm lab:down to remove it all.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/native/common.sh
source scripts/lab/native/common.sh
# shellcheck source=scripts/lab/attached-programs.sh
source scripts/lab/attached-programs.sh

start=$(date +%s)
# --- preflight: say exactly what is missing ---------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || { say "run as root: the agent loads eBPF programs and the lab creates cgroups"; exit 1; }
[[ -r /sys/kernel/btf/vmlinux ]] || { say "this kernel has no BTF (/sys/kernel/btf/vmlinux): the programs are CO-RE"; exit 1; }
[[ -n "$cg2" ]] || { say "no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)"; exit 1; }
if [[ -e "$state" || -e "$lab_cg" || ( -n "$bpffs" && -e "$pin_dir" ) ]]; then
  say "a lab named $lab_name exists already ($state, $lab_cg or $pin_dir): pnpm lab:status, or pnpm lab:down first"
  exit 1
fi
for port in "$lab_port" "$broker_port" "$upstream_port" "$dns_port"; do
  if [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]; then
    say "port $port is in use (LAB_PORT, LAB_BROKER_PORT, LAB_UPSTREAM_PORT, LAB_DNS_PORT choose others)"
    exit 1
  fi
done
if [[ -n "$(ss -Hlun "sport = :$dns_port" 2>/dev/null)" ]]; then
  say "UDP port $dns_port is in use (LAB_DNS_PORT chooses another)"
  exit 1
fi
command -v setpriv >/dev/null || { say "setpriv (util-linux) is missing"; exit 1; }
node_bin=$(command -v node) || { say "node is missing"; exit 1; }

# The same packages and target as `pnpm run build`: after scripts/setup.sh this rebuilds nothing.
[[ -n "$host_triple" ]] || { say "rustc is missing (scripts/setup.sh)"; exit 1; }
say "building the agent if needed (cargo build --release --target $host_triple -p interceptor-ebpf-agent)"
cargo build --release --quiet --target "$host_triple" -p interceptor-ebpf-node -p interceptor-ebpf-agent --bin interceptor-ebpf
bash test-service/gen-certs.sh

# From here on everything created is recorded under $state; on failure the lab stays for inspection.
trap 'say "FAILED: look with pnpm lab:status and the logs in $state/*.log; remove everything with pnpm lab:down"' ERR
mkdir -p "$state"
chmod 0755 "$state"
if [[ -z "$bpffs" ]]; then
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
  bpffs=/sys/fs/bpf
  pin_dir="$bpffs/$lab_name"
  echo /sys/fs/bpf >"$state/mounted-bpffs"
fi
mkdir -p "$lab_cg/infra" "$lab_cg/workloads/test-service"
echo "$lab_cg" >"$state/cgroup"
echo "$pin_dir" >"$state/pin-dir"

# The services run from a copy under $state, readable by the unprivileged service user wherever the
# repository lives.
mkdir -p "$state/app/test-service"
cp test-service/*.mjs "$state/app/test-service/"
cp -r test-service/certs "$state/app/test-service/certs"
chmod -R a+rX "$state/app"
: >"$state/events.ndjson"
chmod 0644 "$state/events.ndjson"

# spawn NAME CGROUP-DIR COMMAND...: detached (own session), in the cgroup from its first instruction, in
# $state/app; standard output to ${SPAWN_STDOUT:-$state/NAME.log}, standard error to $state/NAME.log; the
# pid in $state/NAME.pid.
spawn() {
  local name=$1 cg=$2
  shift 2
  # shellcheck disable=SC2016 # expanded by the child shell
  setsid bash -c 'echo $$ >"$1/cgroup.procs" && cd "$2" && shift 2 && exec "$@"' spawn "$cg" "$state/app" "$@" \
    </dev/null >>"${SPAWN_STDOUT:-$state/$name.log}" 2>>"$state/$name.log" &
  echo $! >"$state/$name.pid"
}

# --- the agent ------------------------------------------------------------------------------------------------
# shellcheck disable=SC2016 # JavaScript
resolvers=$("$node_bin" -e '
  const ips = require("fs").readFileSync("/etc/resolv.conf", "utf8").split("\n")
    .map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === "nameserver" && f[1] && !f[1].includes("%"))
    .map((f) => require("net").isIPv6(f[1]) ? new URL(`http://[${f[1]}]`).hostname.slice(1, -1) : f[1])
  process.stdout.write([...new Set(ips)].map((ip) => JSON.stringify({ ip })).join(","))')
# The broker by name only: the test service reaches it at the addresses the agent's DNS proxy learns from the
# lab resolver's answer, never at a listed address. The resolvers of /etc/resolv.conf stay DNS endpoints (the
# workload's other lookups go there, through the proxy as well).
printf '{"broker":[{"fqdn":"%s","port":%s}],"dns":[{"ip":"127.0.0.1","port":%s}%s],"rules":[]}\n' \
  "$broker_name" "$broker_port" "$dns_port" "${resolvers:+,$resolvers}" >"$state/policy.json"

say "starting the agent (cgroup root ${lab_cg#"$cg2"}/workloads, pins $pin_dir)"
BROKER_EBPF_CGROUP_ROOT="$lab_cg/workloads" \
  BROKER_EBPF_PIN_DIR="$pin_dir" \
  BROKER_EBPF_POLICY_FILE="$state/policy.json" \
  BROKER_EBPF_FAIL_MODE=closed \
  BROKER_EBPF_SOCKET_MODE=0660 \
  BROKER_EBPF_SOCKET_UID=0 \
  BROKER_EBPF_SOCKET_GID=0 \
  BROKER_EBPF_PRIVILEGED_UIDS=0 \
  BROKER_EBPF_ENVIRONMENT=test \
  spawn agent "$lab_cg/infra" "$agent_bin" agent
for _ in $(seq 1 100); do
  ctl health >/dev/null 2>&1 && break
  live_pid agent >/dev/null || { tail -n 20 "$state/agent.log" >&2; say "the agent exited"; false; }
  sleep 0.1
done
ctl health >/dev/null
# The programs the agent attached, at the top of the cgroup2 mount (lab:down checks that each one is gone).
attached_programs "$pin_dir" "$cg2" >"$state/programs"
workload_cgroup="${lab_cg#"$cg2"}/workloads/test-service"
ctl cgroup add "$workload_cgroup" --mode enforce --workload-id "$workload_id" >/dev/null
# The event log: what lab:status shows and where the test service looks up the reason code of a refusal.
SPAWN_STDOUT="$state/events.ndjson" spawn events "$lab_cg/infra" "$agent_bin" ctl events --follow

# --- the lab's resolver, the broker stand-in and the test service ---------------------------------------------------
say "starting the lab resolver (127.0.0.1:$dns_port), the broker stand-in (https://$broker_name:$broker_port) and the test service (localhost:$lab_port)"
DNS_HOST=127.0.0.1 DNS_PORT="$dns_port" DNS_NAME="$broker_name" DNS_A=127.0.0.1 DNS_AAAA=::1 DNS_TTL=30 \
  BROKER_LOG_LEVEL=info spawn dns "$lab_cg/infra" "$node_bin" test-service/dns-stand-in.mjs
BROKER_PORT="$broker_port" UPSTREAM_PORT="$upstream_port" UPSTREAM_HOST=127.0.0.1 BROKER_LOG_LEVEL=info \
  spawn broker "$lab_cg/infra" "$node_bin" test-service/broker-stand-in.mjs
for _ in $(seq 1 50); do
  [[ -n "$(ss -Hltn "sport = :$broker_port")" && -n "$(ss -Hlun "sport = :$dns_port")" ]] && break
  sleep 0.1
done
PORT="$lab_port" BROKER_URL="https://$broker_name:$broker_port" BROKER_DNS_SERVER="127.0.0.1:$dns_port" \
  BROKER_WORKLOAD_ID="$workload_id" \
  BROKER_LOG_LEVEL=info BROKER_FAIL_ON_MANIFEST_ERROR=false \
  DIRECT_CALL_URL="http://127.0.0.1:$upstream_port/v1/chat/completions" \
  BROKER_EBPF_EVENTS_FILE="$state/events.ndjson" \
  spawn service "$lab_cg/workloads/test-service" \
  setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
  "$node_bin" test-service/server.mjs
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$lab_port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
trap - ERR

# --- verification: scripts/lab/check-verdicts.mjs reads the answers and the agent's event log --------------
echo
echo "Native lab: verifying enforcement on the test service (cgroup $workload_cgroup, enforce)"
health=$(curl -sS --max-time 10 "http://127.0.0.1:$lab_port/health" 2>&1 || true)
mark=$(wc -l <"$state/events.ndjson")
# The broker stand-in may take a moment to load the manifest: retry the chat a few times.
for _ in 1 2 3 4 5; do
  chat=$(curl -sS --max-time 10 -H 'content-type: application/json' -d '{"message":"hello from the native lab"}' \
    "http://127.0.0.1:$lab_port/chat" 2>&1 || true)
  "$node_bin" scripts/lab/check-verdicts.mjs --quiet --chat "$chat" && break
  sleep 1
done
direct=$(curl -sS --max-time 15 -X POST "http://127.0.0.1:$lab_port/direct-call" 2>&1 || true)
dns=$(ctl -o json dns 2>&1 || true)
if ! "$node_bin" scripts/lab/check-verdicts.mjs --health "$health" --chat "$chat" \
  --direct "$direct" --direct-code DENY_DEFAULT \
  --events "$state/events.ndjson" --after-line "$mark" --broker-port "$broker_port" --broker-name "$broker_name" \
  --dns "$dns" --dns-broker "$broker_name" \
  --broker-log "$state/broker.log"; then
  echo
  say "enforcement NOT verified (FAIL lines above). The lab is left running for inspection: pnpm lab:status; remove it: pnpm lab:down"
  exit 1
fi
echo
cat <<MSG
Native lab up in $(($(date +%s) - start)) s, enforcement verified. The test service runs on localhost:${lab_port}.
  try     curl localhost:${lab_port}/health
          curl -XPOST localhost:${lab_port}/chat -H 'content-type: application/json' -d '{"message":"hi"}'
          curl -XPOST localhost:${lab_port}/direct-call
  look    pnpm lab:status
          BROKER_EBPF_CONTROL_SOCKET=$state/agentd.sock node bin/interceptor-ebpf.js ctl dns
          BROKER_EBPF_CONTROL_SOCKET=$state/agentd.sock node bin/interceptor-ebpf.js ctl events --follow
  stop    pnpm lab:down
MSG
