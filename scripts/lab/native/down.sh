#!/usr/bin/env bash
# Removes the native lab (pnpm lab:down): exactly what scripts/lab/native/up.sh created, recorded under /run/<name>:
# its processes, its pins (the agent detaches its programs), its cgroup tree, the bpffs mount if the lab made
# it, and /run/<name>. Safe to run twice; exits non-zero if anything it made is still there afterwards.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/native/common.sh
source scripts/lab/native/common.sh

[[ $(id -u) -eq 0 ]] || { say "run as root"; exit 1; }
# What the lab recorded wins over what the current environment would compute.
[[ -s "$state/cgroup" ]] && lab_cg=$(cat "$state/cgroup")
[[ -s "$state/pin-dir" ]] && pin_dir=$(cat "$state/pin-dir")
[[ "$lab_cg" == */"$lab_name" ]] || lab_cg=""
[[ "$pin_dir" == */"$lab_name" ]] || pin_dir=""
programs=()
[[ -s "$state/programs" ]] && mapfile -t programs <"$state/programs"

# 1. Ask the agent to detach and remove its pins: the clean way, while it still runs.
if live_pid agent >/dev/null && [[ -x "$agent_bin" ]]; then
  ctl shutdown --detach >/dev/null 2>&1 || say "the agent did not answer Shutdown; stopping it with SIGTERM"
fi

# 2. Every process in the lab's cgroups (which includes every process the lab started, and only those).
lab_pids() {
  [[ -n "$lab_cg" && -d "$lab_cg" ]] || return 0
  find "$lab_cg" -name cgroup.procs -exec cat {} + 2>/dev/null
}
for signal in TERM TERM TERM KILL; do
  mapfile -t pids < <(lab_pids)
  ((${#pids[@]})) || break
  kill "-$signal" "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 20); do
    [[ -z "$(lab_pids)" ]] && break
    sleep 0.1
  done
done

# 3. Pins the agent did not remove (it was dead, or could not).
if [[ -n "$pin_dir" && -e "$pin_dir" ]]; then
  rm -rf "$pin_dir"
fi

# 4. The cgroup tree, deepest first (a cgroup is removed with rmdir once it has no process).
if [[ -n "$lab_cg" && -d "$lab_cg" ]]; then
  find "$lab_cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
fi

# 5. The bpffs mount, if the lab mounted it, and the state directory.
if [[ -s "$state/mounted-bpffs" ]]; then
  umount "$(cat "$state/mounted-bpffs")" 2>/dev/null || true
fi
rm -rf "$state"

left=()
[[ -n "$lab_cg" && -e "$lab_cg" ]] && left+=("cgroup $lab_cg")
[[ -n "$pin_dir" && -e "$pin_dir" ]] && left+=("pins $pin_dir")
[[ -e "$state" ]] && left+=("$state")
for id in "${programs[@]}"; do
  # A program lives while something holds it: a link, a pin, a process. None of those is left.
  bpftool prog show id "$id" >/dev/null 2>&1 && left+=("program $id")
done
if ((${#left[@]})); then
  say "could not remove: ${left[*]}"
  exit 1
fi
say "removed: processes, ${#programs[@]} programs, pins, cgroups and $state of $lab_name"
