#!/usr/bin/env bash
# A live agent's /metrics as scrapers read it (part of scripts/test-all.sh; root, after the agent is built):
#
#   scripts/check-metrics.sh [AGENT_BINARY]        (default: target/release/interceptor-ebpf)
#
# Starts the agent on a cgroup, pin directory and socket of its own, with a policy file, sends it a few control
# requests, then scrapes it:
#   - without Accept, with */* and with text/plain;version=0.0.4: text 0.0.4, through `promtool check metrics`
#     (Prometheus' text parser and its lint: help text, counter suffixes, units);
#   - with the Accept header Prometheus scrapes with, and with application/openmetrics-text: OpenMetrics 1.0,
#     through promtool's OpenMetrics parser (`promtool tsdb create-blocks-from openmetrics`, the parser
#     Prometheus ingests with; it needs a timestamp on every sample, so one is added) and through the strict
#     parser of the Python client (prometheus_client.openmetrics: # EOF, counter and histogram naming, bucket
#     order, _count equal to the +Inf bucket, canonical le values), which also must find # HELP and # TYPE on
#     every family; `promtool check metrics` reads only text 0.0.4, where OpenMetrics counters look undeclared;
#   - with Accept: application/json: 406;
# and checks that the metrics table of docs/agent.md lists exactly the families the agent serves. Any problem
# fails the script with what was found. The agent is stopped (Shutdown --detach) and everything it made removed.
set -euo pipefail
cd "$(dirname "$0")/.."

agent=${1:-target/release/interceptor-ebpf}
if [[ $(id -u) -ne 0 ]]; then
  if [[ "${CI:-}" == true ]]; then
    echo "check-metrics: needs root (the agent loads eBPF programs)" >&2
    exit 1
  fi
  echo "SKIPPED check-metrics: needs root (the agent loads eBPF programs)"
  exit 0
fi
[[ -x "$agent" ]] || { echo "check-metrics: no agent binary at $agent (cargo build --release -p interceptor-ebpf-agent)" >&2; exit 1; }
command -v promtool >/dev/null || { echo "check-metrics: promtool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null ||
  { echo "check-metrics: the Python prometheus-client is missing (scripts/setup.sh installs it)" >&2; exit 1; }

fail() { echo "check-metrics: $*" >&2; exit 1; }

mount_of() { awk -v t="$1" '$(NF-2) == t {print $5; exit}' /proc/self/mountinfo; }
cg2=$(mount_of cgroup2)
[[ -n "$cg2" ]] || fail "no cgroup2 mount"
bpffs=$(mount_of bpf)
name="interceptor-ebpf-check-metrics-$$"
cgroup="$cg2/$name"
pins="${bpffs:-/sys/fs/bpf}/$name"
work=$(mktemp -d)
socket="$work/run/agentd.sock"
agent_pid=""

cleanup() {
  if [[ -n "$agent_pid" ]] && kill -0 "$agent_pid" 2>/dev/null; then
    "$agent" ctl --socket "$socket" --timeout-ms 5000 shutdown --detach >/dev/null 2>&1 || kill -9 "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  rm -rf "$pins"
  rmdir "$cgroup" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$cgroup"
cat >"$work/policy.json" <<'EOF'
{"broker":[{"ip":"10.66.0.10","port":8081}],"dns":[{"ip":"10.66.0.53"}],
 "rules":[{"id":"allow-api","action":"allow","cidr":"10.66.1.0/24","ports":[443]}]}
EOF
BROKER_EBPF_CGROUP_ROOT="$cgroup" BROKER_EBPF_PIN_DIR="$pins" BROKER_EBPF_CONTROL_SOCKET="$socket" \
  BROKER_EBPF_POLICY_FILE="$work/policy.json" BROKER_EBPF_METRICS_LISTEN=127.0.0.1:0 \
  BROKER_EBPF_PRIVILEGED_UIDS=0 "$agent" agent >"$work/agent.log" 2>&1 &
agent_pid=$!
addr=""
for _ in $(seq 300); do
  addr=$(sed -n 's/.*"agent_event":"started".*"metrics_listen":"\([^"]*\)".*/\1/p' "$work/agent.log")
  [[ -n "$addr" ]] && break
  kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited at start: $(cat "$work/agent.log")"
  sleep 0.1
done
[[ -n "$addr" ]] || fail "the agent did not start within 30 s: $(cat "$work/agent.log")"

# Requests, so that the histograms hold observations: health, status, a policy apply, an unknown command.
ctl() { "$agent" ctl --socket "$socket" "$@" >/dev/null; }
ctl health
ctl status
ctl policy apply "$work/policy.json"
python3 - "$socket" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"command":"NoSuchCommand"}\n')
s.recv(65536)
EOF

# scrape NAME [ACCEPT]: the body to $work/NAME.txt; the Content-Type header printed.
scrape() {
  local args=(-sS --max-time 10 -o "$work/$1.txt" -D "$work/$1.head" -H "Accept: ${2-}")
  curl "${args[@]}" "http://$addr/metrics"
  tr -d '\r' <"$work/$1.head" | sed -n 's/^[Cc]ontent-[Tt]ype: //p'
}
expect_type() { # name accept want
  local got
  got=$(scrape "$1" "$2")
  [[ "$got" == "$3" ]] || fail "Accept: '$2' gave Content-Type '$got', not '$3'"
}
text_type="text/plain; version=0.0.4; charset=utf-8"
om_type="application/openmetrics-text; version=1.0.0; charset=utf-8"
prometheus_accept="application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
# `-H 'Accept: '` (empty) makes curl send no Accept header at all.
expect_type none "" "$text_type"
expect_type any "*/*" "$text_type"
expect_type text "text/plain;version=0.0.4" "$text_type"
expect_type prometheus "$prometheus_accept" "$om_type"
expect_type openmetrics "application/openmetrics-text" "$om_type"
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "http://$addr/metrics")
[[ "$status" == 406 ]] || fail "Accept: application/json gave HTTP $status, not 406"

for f in none any text; do
  if ! promtool check metrics <"$work/$f.txt" >"$work/promtool.out" 2>&1; then
    fail "promtool check metrics found problems in the text 0.0.4 exposition ($f):
$(cat "$work/promtool.out")"
  fi
done

for f in prometheus openmetrics; do
  now=$(date +%s)
  awk -v ts="$now" '/^#/ {print; next} {print $0 " " ts}' "$work/$f.txt" >"$work/$f.stamped"
  if ! promtool tsdb create-blocks-from openmetrics "$work/$f.stamped" "$work/blocks-$f" >"$work/promtool.out" 2>&1; then
    fail "promtool's OpenMetrics parser rejects the exposition ($f):
$(cat "$work/promtool.out")"
  fi
  python3 - "$work/$f.txt" <<'EOF' || fail "the OpenMetrics exposition ($f) fails the strict parser"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
problems = []
try:
    families = list(text_string_to_metric_families(text))
except ValueError as e:
    sys.exit(f"check-metrics: prometheus_client.openmetrics: {e}")
declared = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
for f in families:
    if f.type == "unknown" or f.name not in declared:
        problems.append(f"{f.name}: no # TYPE")
    if not f.documentation:
        problems.append(f"{f.name}: no # HELP")
    if not f.samples:
        problems.append(f"{f.name}: no samples")
if problems:
    sys.exit("check-metrics: " + "; ".join(problems))
EOF
done

# The families the agent serves, by their text 0.0.4 names, against the metrics table of docs/agent.md.
served=$(sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' "$work/none.txt" | sort)
# shellcheck disable=SC2016 # the backticks are Markdown's, matched literally
documented=$(awk '/^## Metrics$/ {on=1; next} on && /^## / {on=0} on && /^\| `/' docs/agent.md |
  awk -F'|' '{print $2}' | grep -o '`[a-z0-9_]*`' | tr -d '`' | sort -u)
if [[ "$served" != "$documented" ]]; then
  fail "the metrics table of docs/agent.md and the served families differ (< served, > documented):
$(diff <(echo "$served") <(echo "$documented") | grep '^[<>]')"
fi

families=$(grep -c '^# TYPE ' "$work/none.txt")
samples=$(grep -vc '^#' "$work/none.txt")
echo "check-metrics: $families families, $samples samples; text 0.0.4 passes promtool check metrics," \
  "OpenMetrics passes promtool's and prometheus_client's parsers; Accept negotiated as documented; docs/agent.md lists every family"
