#!/usr/bin/env bash
# Status of the native lab (pnpm lab:status): its processes, the agent's health and status, the last
# verdicts, and a fresh direct call from the test service with what the kernel said. Exits non-zero when the
# lab is not running or the direct call is not refused.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/native/common.sh
source scripts/lab/native/common.sh
report_failed=0

if [[ ! -d "$state" ]]; then
  say "no native lab is running ($state does not exist): pnpm lab"
  exit 1
fi
echo "== processes"
for name in agent events dns broker service; do
  if pid=$(live_pid "$name"); then
    printf '  %-8s pid %-8s cgroup %s\n' "$name" "$pid" "$(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
  else
    printf '  %-8s NOT RUNNING (log: %s)\n' "$name" "$state/$name.log"
    report_failed=1
  fi
done
echo "== agent health (interceptor-ebpf ctl health)"
ctl health || report_failed=1
echo "== agent status (interceptor-ebpf ctl status)"
ctl status || report_failed=1
echo "== the DNS proxy and the addresses it learned (interceptor-ebpf ctl dns)"
ctl dns || report_failed=1
echo "== last verdicts (of $(wc -l <"$state/events.ndjson") in $state/events.ndjson)"
tail -n 8 "$state/events.ndjson" | sed 's/^/  /'
echo "== a direct call around the broker, now"
direct=$(curl -sS --max-time 15 -X POST "http://127.0.0.1:$lab_port/direct-call" 2>&1 || true)
node scripts/lab/check-verdicts.mjs --direct "$direct" --events "$state/events.ndjson" || report_failed=1
echo
echo "follow the verdicts: BROKER_EBPF_CONTROL_SOCKET=$state/agentd.sock node bin/interceptor-ebpf.js ctl events --follow"
exit "$report_failed"
