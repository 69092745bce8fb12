#!/usr/bin/env bash
# Checks the agents `pnpm release:pack` put into the Linux platform tarballs of <dist-dir>, as root:
#
#   bash scripts/platforms/check-agents.sh <dist-dir>
#
#   every Linux target  package/interceptor-ebpf and package/interceptor-ebpf.<suffix>.node are in the tarball;
#                       the agent's ELF machine (X86-64 / AArch64)
#   *-musl              the agent is static (no dynamic section, nothing NEEDED)
#   *-gnu               the agent needs no GLIBC_x.y newer than GLIBC_FLOOR in js/native.js
#   linux-x64-musl      runs the dataplane on this host: `agent` with its own control socket, bpffs pin dir and
#                       cgroup root (a fresh cgroup below the cgroup2 mount, never the host's own cgroups), a
#                       default-deny policy allowing one loopback port, a managed child cgroup; from a process
#                       in that cgroup a connect to the allowed port succeeds (ALLOW_EXPLICIT logged) and one
#                       to another port with a listener fails with EPERM (DENY_DEFAULT logged); at the end
#                       `ctl shutdown --detach` stops it, removes its pins and the other port connects again
#   linux-x64-gnu       `--version` natively
#   linux-arm64-*       under qemu-aarch64-static (installed with apt-get when missing, with libc6-arm64-cross
#                       for the glibc one): `--version`, and `ctl health` against the running x64 musl agent
#
# Everything it creates (temp dir, cgroups, pins, processes, a bpffs mount it made) is removed on exit, also on
# failure or Ctrl-C. Prints a summary table; exits 1 naming each failed check, 2 on a usage/preflight error.
set -euo pipefail

say() { printf 'check-agents: %s\n' "$*"; }
die() { printf 'check-agents: %s\n' "$*" >&2; exit 2; }

[[ $# -eq 1 ]] || die "usage: bash scripts/platforms/check-agents.sh <dist-dir>"
[[ -d "$1" ]] || die "$1 is not a directory (the dist dir of pnpm release:pack)"
dist=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3

# --- preflight ------------------------------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "run as root: the x64 musl agent loads eBPF programs and the check creates cgroups"
[[ -x "$py" ]] || die "needs $py (the probes are Python; the system interpreter, not a pyenv shim)"
command -v llvm-readelf-19 >/dev/null || die "needs llvm-readelf-19: apt-get install llvm-19"
[[ -r /sys/kernel/btf/vmlinux ]] || die "this kernel has no BTF (/sys/kernel/btf/vmlinux): the dataplane is CO-RE"
version=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$root/package.json") ||
  die "cannot read the version from $root/package.json"
glibc_floor=$(sed -n "s/^const GLIBC_FLOOR = '\([0-9.]*\)'.*/\1/p" "$root/js/native.js")
[[ -n "$glibc_floor" ]] || die "js/native.js has no GLIBC_FLOOR constant"
# Mount points from this process's mountinfo: field 5 is the mount point, the fstype follows the " - ".
mount_of() { awk -v t="$1" '$(NF-2) == t {print $5; exit}' /proc/self/mountinfo; }
cg2=$(mount_of cgroup2)
[[ -n "$cg2" ]] || die "no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)"

targets=(linux-x64-musl linux-x64-gnu linux-arm64-gnu linux-arm64-musl)
name="check-agents-$$"

# --- state and cleanup ----------------------------------------------------------------------------------------
tmp=""
sock=""
agent_pid=""
listener_pid=""
pin_dir=""
cg_dir=""
mounted_bpffs=""

alive() { # pid: running (a zombie is not)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

wait_gone() { # pid seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}

# Every process in our cgroup subtree.
subtree_pids() {
  [[ -n "$cg_dir" && -d "$cg_dir" ]] || return 0
  find "$cg_dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

cleanup() {
  local rc=$? left=() pid own i
  trap - EXIT INT TERM
  set +eu
  # 1. The agent: detach and remove its pins the clean way, else signals.
  if [[ -n "$agent_pid" ]] && alive "$agent_pid"; then
    timeout 10 "$tmp/linux-x64-musl/package/interceptor-ebpf" ctl --socket "$sock" shutdown --detach >/dev/null 2>&1
    if ! wait_gone "$agent_pid" 10; then
      say "cleanup: the agent did not stop after Shutdown; SIGTERM"
      kill -TERM "$agent_pid" 2>/dev/null
      wait_gone "$agent_pid" 5 || kill -KILL "$agent_pid" 2>/dev/null
    fi
  fi
  [[ -n "$agent_pid" ]] && wait "$agent_pid" 2>/dev/null
  # 2. The listener, and every process left in our cgroups: moved back to this script's cgroup v2, then killed.
  if [[ -n "$listener_pid" ]]; then
    kill -KILL "$listener_pid" 2>/dev/null
    wait "$listener_pid" 2>/dev/null
  fi
  own="$cg2$(sed -n 's/^0:://p' /proc/$$/cgroup)"
  [[ -w "$own/cgroup.procs" ]] || own="$cg2"
  for ((i = 0; i < 20; i++)); do
    mapfile -t pids < <(subtree_pids)
    ((${#pids[@]})) || break
    for pid in "${pids[@]}"; do
      echo "$pid" >"$own/cgroup.procs" 2>/dev/null || echo "$pid" >"$cg2/cgroup.procs" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
    done
    sleep 0.1
  done
  # 3. Pins the agent did not remove (it was killed, or never answered).
  [[ -n "$pin_dir" && -e "$pin_dir" ]] && rm -rf "$pin_dir"
  # 4. Our cgroups, deepest first.
  if [[ -n "$cg_dir" ]]; then
    for ((i = 0; i < 50; i++)); do
      [[ -d "$cg_dir" ]] || break
      find "$cg_dir" -depth -type d -exec rmdir {} + 2>/dev/null
      sleep 0.1
    done
  fi
  # 5. A bpffs mount we made, the temp dir.
  [[ -n "$mounted_bpffs" ]] && umount "$mounted_bpffs"
  [[ -n "$tmp" ]] && rm -rf "$tmp"
  [[ -n "$cg_dir" && -e "$cg_dir" ]] && left+=("cgroup $cg_dir")
  [[ -n "$pin_dir" && -e "$pin_dir" ]] && left+=("pins $pin_dir")
  [[ -n "$tmp" && -e "$tmp" ]] && left+=("$tmp")
  [[ -n "$agent_pid" ]] && alive "$agent_pid" && left+=("agent pid $agent_pid")
  if ((${#left[@]})); then
    printf 'check-agents: FAILED: cleanup could not remove: %s\n' "${left[*]}" >&2
    ((rc == 0)) && rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted (SIGINT): cleaning up" >&2; exit 130' INT
trap 'say "terminated (SIGTERM): cleaning up" >&2; exit 143' TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-agents.XXXXXX")
sock="$tmp/run/agentd.sock"
((${#sock} <= 107)) || die "control socket path $sock is longer than 107 bytes: set TMPDIR to a shorter directory"

# --- the check table ------------------------------------------------------------------------------------------
rows=()     # "target|check|result|seconds"
failures=() # "target / check: detail"
detail=""   # set by a check: what happened (PASS) or why not (FAIL)

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# check TARGET NAME FUNCTION ARGS...: runs FUNCTION (which sets $detail and returns non-zero on failure).
check() {
  local target=$1 what=$2 start result secs
  shift 2
  detail=""
  start=$(now_ms)
  if "$@"; then result=PASS; else result=FAIL; fi
  secs=$(awk -v ms="$(($(now_ms) - start))" 'BEGIN {printf "%.1f", ms / 1000}')
  rows+=("$target|$what|$result|$secs")
  printf '%s %-17s %-34s %s\n' "$result" "$target" "$what" "$detail"
  if [[ $result == FAIL ]]; then
    failures+=("$target / $what: $detail")
    return 1
  fi
}

skip() { # TARGET NAME WHY
  rows+=("$1|$2|SKIP|-")
  printf 'SKIP %-17s %-34s %s\n' "$1" "$2" "$3"
}

bin_of() { echo "$tmp/$1/package/interceptor-ebpf"; }

# --- checks ---------------------------------------------------------------------------------------------------
extract() { # suffix
  local tgz="$dist/broker-interceptor-interceptor-ebpf-$1-$version.tgz" dir="$tmp/$1" f
  [[ -f "$tgz" ]] || { detail="$tgz is missing"; return 1; }
  mkdir -p "$dir"
  tar -xzf "$tgz" -C "$dir" --no-same-owner 2>"$dir.tar.err" || { detail="tar: $(head -c 300 "$dir.tar.err")"; return 1; }
  for f in interceptor-ebpf "interceptor-ebpf.$1.node"; do
    [[ -f "$dir/package/$f" ]] || { detail="package/$f is not in $(basename "$tgz")"; return 1; }
  done
  [[ -x "$dir/package/interceptor-ebpf" ]] || { detail="package/interceptor-ebpf is not executable"; return 1; }
  detail="$(basename "$tgz"): agent $(stat -c %s "$dir/package/interceptor-ebpf") bytes"
}

elf_machine() { # suffix
  local want got
  want=$([[ $1 == linux-x64-* ]] && echo 'Advanced Micro Devices X86-64' || echo AArch64)
  got=$(llvm-readelf-19 --file-header "$(bin_of "$1")" 2>&1 | sed -n 's/^ *Machine: *//p')
  detail="Machine: ${got:-unreadable}"
  [[ "$got" == "$want" ]] || { detail+=", expected $want"; return 1; }
}

static() { # suffix
  local out needed
  out=$(llvm-readelf-19 --dynamic "$(bin_of "$1")" 2>&1) || { detail="llvm-readelf-19 --dynamic failed: $out"; return 1; }
  needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$out" | tr '\n' ' ')
  [[ -z "$needed" ]] || { detail="needs shared libraries: $needed"; return 1; }
  if grep -q 'Dynamic section' <<<"$out"; then
    detail="has a dynamic section (static-pie?): $(head -n 1 <<<"$out")"
    return 1
  fi
  detail="no dynamic section, nothing NEEDED"
}

glibc_floor() { # suffix
  local newest
  newest=$(llvm-readelf-19 --dyn-syms --wide "$(bin_of "$1")" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1 || true)
  detail="newest symbol version GLIBC_${newest:-none} (floor $glibc_floor)"
  [[ -n "$newest" ]] || { detail="no GLIBC_ symbol versions: not a glibc binary?"; return 1; }
  [[ "$(printf '%s\n%s\n' "$newest" "$glibc_floor" | sort -V | tail -n 1)" == "$glibc_floor" ]] || {
    detail+=": newer than the floor"
    return 1
  }
}

version_of() { # suffix runner...
  local suffix=$1 out
  shift
  out=$(timeout 30 "$@" "$(bin_of "$suffix")" --version 2>&1) || { detail="exit $?: $out"; return 1; }
  detail="$out"
  [[ "$out" == "interceptor-ebpf $version" ]] || { detail="'$out', expected 'interceptor-ebpf $version'"; return 1; }
}

x64ctl() { timeout 20 "$(bin_of linux-x64-musl)" ctl --socket "$sock" "$@"; }

# The newest agent log line matching python condition on record `r`, within 5 s: verdict records are on
# standard output (agent.log), operational lines (agent_event) on standard error (agent.err).
log_line() { # condition
  "$py" - "$1" "$tmp/agent.log" "$tmp/agent.err" <<'PY'
import json, sys, time
cond, paths = sys.argv[1], sys.argv[2:]
deadline = time.monotonic() + 5
while True:
    for path in paths:
      with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and eval(cond, {}, {"r": r}):
                print(line.strip())
                sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.1)
PY
}

start_agent() {
  local bpffs
  bpffs=$(mount_of bpf)
  if [[ -z "$bpffs" ]]; then
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf || { detail="no bpffs mounted and mounting one at /sys/fs/bpf failed"; return 1; }
    mounted_bpffs=/sys/fs/bpf
    bpffs=/sys/fs/bpf
  fi
  [[ ! -e "$bpffs/$name" && ! -e "$cg2/$name" ]] || { detail="$bpffs/$name or $cg2/$name exists already"; return 1; }
  pin_dir="$bpffs/$name"
  cg_dir="$cg2/$name"
  mkdir "$cg_dir" "$cg_dir/workload" || { detail="cannot create cgroups below $cg2"; return 1; }
  # A clean environment (no BROKER_EBPF_* of the caller), everything given as flags.
  env -i PATH="$PATH" "$(bin_of linux-x64-musl)" agent \
    --control-socket "$sock" --pin-dir "$pin_dir" --cgroup-root "$cg_dir" \
    --privileged-uids 0 --environment test --heartbeat-interval-ms 500 --heartbeat-grace-ms 5000 \
    </dev/null >"$tmp/agent.log" 2>"$tmp/agent.err" &
  agent_pid=$!
  local line
  if ! line=$(log_line 'r.get("agent_event") == "started"'); then
    if alive "$agent_pid"; then detail="no started line within 5 s"; else detail="the agent exited"; fi
    detail+="; stderr: $(tail -c 400 "$tmp/agent.err" | tr '\n' ' ')"
    return 1
  fi
  alive "$agent_pid" || { detail="the agent exited after starting: $(tail -c 400 "$tmp/agent.err")"; return 1; }
  detail="pid $agent_pid, cgroup root $cg_dir, pins $pin_dir; $(log_line 'r.get("agent_event") == "layers"' |
    "$py" -c 'import json,sys; print("layers:", ",".join(json.load(sys.stdin)["active"]))' 2>/dev/null || true)"
}

policy_and_cgroup() {
  local out
  # Ports: two loopback listeners outside the managed cgroup, so a refused connect can only be the policy.
  "$py" - "$tmp/ports" <<'PY' >/dev/null 2>"$tmp/listener.err" &
import os, select, socket, sys
ls = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    ls.append(s)
with open(sys.argv[1] + ".new", "w") as f:
    f.write(" ".join(str(s.getsockname()[1]) for s in ls) + "\n")
os.rename(sys.argv[1] + ".new", sys.argv[1])
while True:
    for s in select.select(ls, [], [], 60)[0]:
        s.accept()[0].close()
PY
  listener_pid=$!
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$tmp/ports" ]] && break; sleep 0.1; done
  read -r port_allow port_deny <"$tmp/ports" || { detail="the listener did not start: $(cat "$tmp/listener.err")"; return 1; }
  printf '{"broker":[],"dns":[],"rules":[{"id":"check-agents-allow","action":"allow","cidr":"127.0.0.1/32","ports":[%s],"protocol":"tcp"}]}\n' \
    "$port_allow" >"$tmp/policy.json"
  out=$(x64ctl policy apply "$tmp/policy.json" 2>&1) || { detail="ctl policy apply: exit $?: $out"; return 1; }
  workload_path="/${cg_dir#"$cg2"/}/workload"
  out=$(x64ctl cgroup add "$workload_path" --mode enforce --workload-id check-agents 2>&1) ||
    { detail="ctl cgroup add: exit $?: $out"; return 1; }
  detail="policy allows tcp 127.0.0.1:$port_allow only; $out"
  # Degraded until a policy is loaded; the agent re-evaluates on its next heartbeat (500 ms).
  local rc
  for ((i = 0; i < 50; i++)); do
    rc=0
    x64ctl health >/dev/null 2>&1 || rc=$?
    ((rc == 0)) && return 0
    sleep 0.1
  done
  detail+="; ctl health still exit $rc 5 s after the policy: $(x64ctl health 2>&1 | tr '\n' ' ')"
  return 1
}

# probe PORT...: from a new process in the managed cgroup (moved there before exec), a TCP connect to each
# 127.0.0.1:PORT; sets $probe (one JSON line: pid, cgroup, errno per port).
run_probe() {
  # shellcheck disable=SC2016 # expanded by the child shell
  probe=$(timeout 20 bash -c 'echo $$ >"$1/cgroup.procs" && exec "$2" -c "$3" "${@:4}"' probe \
    "$cg_dir/workload" "$py" '
import errno, json, os, socket, sys
cg = [l[3:].strip() for l in open("/proc/self/cgroup") if l.startswith("0::")]
res = {"pid": os.getpid(), "cgroup": cg[0] if cg else "", "connect": {}}
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", int(port)))
        e = "connected"
    except OSError as x:
        e = errno.errorcode.get(x.errno, str(x))
    finally:
        s.close()
    res["connect"][port] = e
print(json.dumps(res))
' "$@" 2>&1)
}

probe_field() { "$py" -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, {"r": r}))' "$probe" "$1"; }

connects() {
  run_probe "$port_allow" "$port_deny" || { detail="the probe failed: $probe"; return 1; }
  probe_pid=$(probe_field 'r["pid"]') || { detail="probe output: $probe"; return 1; }
  local cg allow deny
  cg=$(probe_field 'r["cgroup"]')
  allow=$(probe_field "r['connect']['$port_allow']")
  deny=$(probe_field "r['connect']['$port_deny']")
  detail="pid $probe_pid in $cg: :$port_allow $allow, :$port_deny $deny"
  [[ "$cg" == "$workload_path" ]] || { detail+="; expected cgroup $workload_path"; return 1; }
  [[ "$allow" == connected ]] || { detail+="; the allowed port must connect"; return 1; }
  [[ "$deny" == EPERM ]] || { detail+="; the other port must fail with EPERM"; return 1; }
}

verdict_logged() { # port reason verdict
  local line
  line=$(log_line "r.get('code_namespace') == 'dataplane_verdict' and r.get('pid') == $probe_pid \
and r.get('dst_port') == $1 and r.get('dst_ip') == '127.0.0.1' and r.get('hook') == 'connect4'") ||
    { detail="no verdict line for pid $probe_pid -> 127.0.0.1:$1 in the agent's log"; return 1; }
  detail=$line
  "$py" -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["reason_code"] == sys.argv[2] and r["verdict"] == sys.argv[3]))' \
    "$line" "$2" "$3" || { detail="expected $2/$3: $line"; return 1; }
}

qemu_ready() {
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  [[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]] || missing+=(libc6-arm64-cross)
  if ((${#missing[@]} == 0)); then
    detail="present: $(qemu-aarch64-static --version | head -n 1)"
    return 0
  fi
  say "installing ${missing[*]} (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$tmp/apt.log" 2>&1; then
    detail="apt-get install ${missing[*]} failed: $(tail -n 3 "$tmp/apt.log" | tr '\n' ' ')"
    return 1
  fi
  if ! command -v qemu-aarch64-static >/dev/null || [[ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]]; then
    detail="installed ${missing[*]} but qemu-aarch64-static or the aarch64 ld.so is still missing"
    return 1
  fi
  detail="installed ${missing[*]}: $(qemu-aarch64-static --version | head -n 1)"
}

health_from() { # suffix runner...
  local suffix=$1 out rc=0
  shift
  out=$(timeout 30 "$@" "$(bin_of "$suffix")" ctl --socket "$sock" health 2>&1) || rc=$?
  detail="exit $rc: $(head -n 1 <<<"$out")"
  ((rc == 0)) || { detail+=" $(tail -n +2 <<<"$out" | tr '\n' ' ')"; return 1; }
  [[ "$(head -n 1 <<<"$out")" == "status: ok" ]] || { detail+=", expected 'status: ok'"; return 1; }
}

shutdown_detach() {
  local out rc=0 line
  out=$(x64ctl shutdown --detach 2>&1) || { detail="ctl shutdown --detach: exit $?: $out"; return 1; }
  wait_gone "$agent_pid" 10 || { detail="the agent still runs 10 s after Shutdown"; return 1; }
  wait "$agent_pid" || rc=$?
  ((rc == 0)) || { detail="the agent exited $rc"; return 1; }
  line=$(log_line 'r.get("agent_event") == "stopped"') || { detail="no stopped line"; return 1; }
  [[ "$line" == *'"enforcement":"detached"'* ]] || { detail="not detached: $line"; return 1; }
  if [[ -d "$pin_dir" && -n "$(find "$pin_dir" -mindepth 1 -maxdepth 1)" ]]; then
    detail="pins left in $pin_dir: $(find "$pin_dir" -mindepth 1 -maxdepth 1 -printf '%f ')"
    return 1
  fi
  run_probe "$port_deny" || { detail="the probe failed: $probe"; return 1; }
  [[ "$(probe_field "r['connect']['$port_deny']")" == connected ]] ||
    { detail="after detach :$port_deny still gives $(probe_field "r['connect']['$port_deny']")"; return 1; }
  detail="exit 0, enforcement detached, no pins left, :$port_deny connects again"
}

# --- run ------------------------------------------------------------------------------------------------------
say "version $version, dist $dist, cgroup2 at $cg2, temp $tmp"
declare -A have=()
for t in "${targets[@]}"; do
  check "$t" "tarball contents" extract "$t" && have[$t]=1
done
for t in "${targets[@]}"; do
  if [[ -z "${have[$t]:-}" ]]; then
    skip "$t" "ELF checks" "no tarball"
    continue
  fi
  check "$t" "ELF machine" elf_machine "$t" || true
  case "$t" in
    *-musl) check "$t" "static (llvm-readelf -d)" static "$t" || true ;;
    *-gnu) check "$t" "glibc <= $glibc_floor" glibc_floor "$t" || true ;;
  esac
done

# The x64 musl agent runs the dataplane.
agent_up=""
if [[ -n "${have[linux-x64-musl]:-}" ]]; then
  check linux-x64-musl "--version" version_of linux-x64-musl || true
  if check linux-x64-musl "agent starts" start_agent &&
    check linux-x64-musl "policy apply + cgroup add" policy_and_cgroup; then
    agent_up=1
    if check linux-x64-musl "connect allowed ok / other EPERM" connects; then
      check linux-x64-musl "log: ALLOW_EXPLICIT allowed port" verdict_logged "$port_allow" ALLOW_EXPLICIT allow || true
      check linux-x64-musl "log: DENY_DEFAULT other port" verdict_logged "$port_deny" DENY_DEFAULT deny || true
    fi
  fi
else
  skip linux-x64-musl "agent (dataplane)" "no tarball"
fi
if [[ -n "${have[linux-x64-gnu]:-}" ]]; then
  check linux-x64-gnu "--version" version_of linux-x64-gnu || true
fi

# arm64 under qemu-user, against the running x64 agent.
if [[ -n "${have[linux-arm64-musl]:-}${have[linux-arm64-gnu]:-}" ]] && check linux-arm64 "qemu-user-static" qemu_ready; then
  for t in linux-arm64-musl linux-arm64-gnu; do
    [[ -n "${have[$t]:-}" ]] || continue
    runner=(qemu-aarch64-static)
    [[ $t == *-gnu ]] && runner+=(-L /usr/aarch64-linux-gnu)
    check "$t" "--version (qemu)" version_of "$t" "${runner[@]}" || true
    if [[ -n "$agent_up" ]]; then
      check "$t" "ctl health -> x64 agent (qemu)" health_from "$t" "${runner[@]}" || true
    else
      skip "$t" "ctl health -> x64 agent (qemu)" "the x64 musl agent is not running"
    fi
  done
fi

if [[ -n "$agent_up" ]]; then
  check linux-x64-musl "shutdown --detach" shutdown_detach || true
fi

# --- summary --------------------------------------------------------------------------------------------------
echo
printf '%-17s %-34s %-6s %7s\n' target check result seconds
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d <<<"$r"
  printf '%-17s %-34s %-6s %7s\n' "$a" "$b" "$c" "$d"
done
echo "total: ${SECONDS} s"
if ((${#failures[@]})); then
  for f in "${failures[@]}"; do printf 'check-agents: FAILED: %s\n' "$f" >&2; done
  if [[ -s "$tmp/agent.log" || -s "$tmp/agent.err" ]]; then
    echo "--- the x64 musl agent's last output ---" >&2
    tail -n 15 "$tmp/agent.log" "$tmp/agent.err" >&2 2>/dev/null || true
  fi
  exit 1
fi
say "all ${#rows[@]} checks passed"
