#!/usr/bin/env bash
# Status of the Docker lab (pnpm docker:ebpf-lab:status): the containers, the agent's health and status,
# the last verdicts it reported, and a fresh direct call from the nested service with what the kernel said.
# Exits non-zero when the lab is not running or the direct call is not refused.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/docker/common.sh
source scripts/lab/docker/common.sh
require_engine

if [[ "$(docker inspect -f '{{.State.Running}}' "$host_container" 2>/dev/null)" != true ]]; then
  say "$host_container is not running (start it: pnpm docker:ebpf-lab:up)"
  docker ps -a --filter "label=$lab_label" --format '  {{.Names}}\t{{.Status}}' >&2
  exit 1
fi

echo "== containers"
docker ps -a --filter "label=$lab_label" --format '  {{.Names}}\t{{.Image}}\t{{.Status}}'
in_host docker ps -a --format '  (nested) {{.Names}}\t{{.Image}}\t{{.Status}}'
echo "== agent health (interceptor-ebpf ctl health)"
in_host interceptor-ebpf ctl health || true
echo "== agent status (interceptor-ebpf ctl status)"
in_host interceptor-ebpf ctl status || true
echo "== the DNS proxy and the addresses it learned (interceptor-ebpf ctl dns)"
in_host interceptor-ebpf ctl dns || true
echo "== last verdicts (of $(in_host sh -c 'wc -l </run/ebpf-lab/events/events.ndjson') events)"
in_host tail -n 8 /run/ebpf-lab/events/events.ndjson | sed 's/^/  /' || true
echo "== a direct call around the broker, now"
direct=$(service POST /direct-call 2>&1 || true)
echo "  $direct"
in_host cat /run/ebpf-lab/events/events.ndjson | node scripts/lab/check-verdicts.mjs --direct "$direct" --events -
