# Sourced by scripts/lab/native/{up,status,down}.sh: the native lab's names, in one place.
# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this file
#
#   LAB_PORT          (3000)  the test service, on localhost
#   LAB_BROKER_PORT   (8081)  the broker stand-in (mTLS), on loopback
#   LAB_UPSTREAM_PORT (8082)  the "upstream AI API" stand-in on 127.0.0.1: the target of the direct call
#   LAB_DNS_PORT      (5300)  the lab's resolver (test-service/dns-stand-in.mjs) on 127.0.0.1, UDP and TCP: it
#                             answers broker.lab.internal, the name the policy and the test service use for the broker
#   LAB_NAME          (interceptor-ebpf-lab)  names the cgroup, the bpffs pin directory and /run/<name>
#
# What the lab creates, and down.sh removes (nothing else is touched):
#   <cgroup2>/<name>/                   the lab's cgroup tree (the host's own cgroups are never managed)
#     infra/                            the agent, the broker and DNS stand-ins, the event follower (not enforced)
#     workloads/                        the agent's cgroup root: only cgroups below it can be managed (the
#                                       programs attach at the top of the cgroup2 mount)
#       test-service/                   the test service, a managed cgroup in enforce mode
#   <bpffs>/<name>/                     the agent's pins
#   /run/<name>/                        control socket, policy, pids, logs, the event log
# The lab uses the host's network namespace and loopback only (no route, firewall or interface changes).

lab_name="${LAB_NAME:-interceptor-ebpf-lab}"
lab_port="${LAB_PORT:-3000}"
broker_port="${LAB_BROKER_PORT:-8081}"
upstream_port="${LAB_UPSTREAM_PORT:-8082}"
dns_port="${LAB_DNS_PORT:-5300}"
# The broker's name: the policy names the broker by it, the DNS stand-in answers it, the certificate covers it.
broker_name=broker.lab.internal
state="/run/$lab_name"
workload_id="${BROKER_WORKLOAD_ID:-w_f73d1dc18e9c41bc89c5928d5bc67230}"
# Where `pnpm run build` puts the agent: napi builds for the explicit host target.
host_triple=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
agent_bin="$PWD/target/${host_triple:-unknown}/release/interceptor-ebpf"
export BROKER_EBPF_CONTROL_SOCKET="$state/agentd.sock"

if ! [[ "$lab_name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
  echo "lab: LAB_NAME must be 1-63 characters of [A-Za-z0-9._-], not '$lab_name'" >&2
  exit 2
fi
for v in lab_port broker_port upstream_port dns_port; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]] || ((${!v} < 1 || ${!v} > 65535)); then
    echo "lab: LAB_PORT, LAB_BROKER_PORT, LAB_UPSTREAM_PORT and LAB_DNS_PORT must be ports 1..65535 ($v is '${!v}')" >&2
    exit 2
  fi
done

say() { printf 'lab: %s\n' "$*" >&2; }

# The cgroup v2 and bpffs mount points, from this process's mountinfo (never assumed: a hybrid host has
# cgroup2 at /sys/fs/cgroup/unified, a pure v2 host at /sys/fs/cgroup).
mount_of() { awk -v t="$1" '$(NF-2) == t {print $5; exit}' /proc/self/mountinfo; }
cg2=$(mount_of cgroup2)
bpffs=$(mount_of bpf)
lab_cg="${cg2:+$cg2/$lab_name}"
pin_dir="${bpffs:+$bpffs/$lab_name}"

ctl() { "$agent_bin" ctl "$@"; }

# A pid from a pid file, if that process still runs the expected program.
live_pid() { # name
  local pid
  pid=$(cat "$state/$1.pid" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ -d /proc/$pid ]] || return 1
  printf '%s\n' "$pid"
}
