#!/usr/bin/env bash
# CI only (called by .ci/run before scripts/setup.sh; never by the user-facing setup): installs a Docker engine
# from Debian's packages and starts dockerd if none is answering, so that CI can run the Docker lab for real.
#
# What it does, and why:
# - apt: docker.io, containerd, runc, docker-compose (v1: Debian 12 has neither the `docker compose` plugin nor
#   buildx, so the scripts use docker-compose v1 and the legacy builder), debootstrap (the base image is built
#   from Debian's mirror: there is no container registry here), socat and jq.
# - Some VMs run with a capability bounding set that lacks a capability Docker grants to privileged containers
#   (this CI's VM lacks CAP_SYS_RESOURCE), and then `docker run --privileged` fails with "unable to apply caps:
#   operation not permitted". When that is so, dockerd is started with a small runc wrapper as its default
#   runtime; the wrapper removes, from each container's OCI config, the capabilities that the bounding set
#   does not have, and then runs the real runc. The wrapper is installed only here, for CI.
# - dockerd is started only if no engine answers; it is left running for the rest of the CI run, its pid in
#   /run/interceptor-ebpf-ci/dockerd.pid and its log in /run/interceptor-ebpf-ci/dockerd.log.
# - `--stop` (.ci/run calls it on exit) stops the dockerd this script started, if it still runs, and removes the
#   `docker` cgroup directories it made (empty once its containers are gone), so a CI run leaves the host's cgroup
#   tree as it found it. An engine this script did not start is left alone.
set -euo pipefail

state=/run/interceptor-ebpf-ci
wrapper=/usr/local/libexec/interceptor-ebpf-ci/runc-bounded-caps
start=$(date +%s)

if [[ ${1:-} == --stop ]]; then
  pid=$(cat "$state/dockerd.pid" 2>/dev/null || true)
  if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
    kill "$pid"
    for _ in $(seq 1 30); do
      [[ -e /proc/$pid ]] || break
      sleep 1
    done
    rm -f "$state/dockerd.pid"
    # Every cgroup hierarchy's `docker` directory, deepest first (rmdir fails on one still in use: left as is).
    awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^cgroup2?$/) print $5; break } }' /proc/self/mountinfo |
      while read -r mnt; do
        if [[ -d $mnt/docker ]]; then
          find "$mnt/docker" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        fi
      done
    echo "ci-docker-setup: stopped the dockerd it had started (pid $pid)"
  fi
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "ci-docker-setup: must run as root (installs packages and starts dockerd)" >&2
  exit 1
fi

packages=(docker.io containerd runc docker-compose debootstrap socat jq)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "ci-docker-setup: installing ${missing[*]}"
  apt-get update -qq
  # policy-rc.d keeps the packages' maintainer scripts from starting services on hosts with an init system:
  # this script decides what runs.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$state"
if docker version >/dev/null 2>&1; then
  echo "ci-docker-setup: a Docker engine already answers; leaving it as it is"
else
  dockerd_args=()
  # Capabilities the OCI runtime would be asked to grant but this process's bounding set lacks.
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  if ((!(bnd >> 24 & 1))); then
    echo "ci-docker-setup: the bounding set lacks CAP_SYS_RESOURCE: dockerd gets a runc wrapper that drops it"
    mkdir -p "$(dirname "$wrapper")"
    cat >"$wrapper" <<'WRAPPER'
#!/bin/sh
# Installed by interceptor-ebpf's scripts/ci-docker-setup.sh (CI only). Before runc creates a container
# (`--bundle DIR`: DIR/config.json) or execs into one (`--process FILE`), removes from the OCI spec every
# capability that this process's bounding set lacks, then runs runc with the same arguments.
bundle=""
process=""
prev=""
for arg in "$@"; do
  case "$prev" in
    --bundle | -b) bundle="$arg" ;;
    --process | -p) process="$arg" ;;
  esac
  case "$arg" in
    --bundle=*) bundle="${arg#--bundle=}" ;;
    --process=*) process="${arg#--process=}" ;;
  esac
  prev="$arg"
done
drop_missing_caps() { # spec-file jq-path-to-capabilities
  [ -f "$1" ] || return 0
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  # Capability names by number (linux/capability.h); a name whose bit is clear in CapBnd is removed.
  jq --arg bnd "$bnd" '
    ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_DAC_READ_SEARCH","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID",
     "CAP_SETUID","CAP_SETPCAP","CAP_LINUX_IMMUTABLE","CAP_NET_BIND_SERVICE","CAP_NET_BROADCAST",
     "CAP_NET_ADMIN","CAP_NET_RAW","CAP_IPC_LOCK","CAP_IPC_OWNER","CAP_SYS_MODULE","CAP_SYS_RAWIO",
     "CAP_SYS_CHROOT","CAP_SYS_PTRACE","CAP_SYS_PACCT","CAP_SYS_ADMIN","CAP_SYS_BOOT","CAP_SYS_NICE",
     "CAP_SYS_RESOURCE","CAP_SYS_TIME","CAP_SYS_TTY_CONFIG","CAP_MKNOD","CAP_LEASE","CAP_AUDIT_WRITE",
     "CAP_AUDIT_CONTROL","CAP_SETFCAP","CAP_MAC_OVERRIDE","CAP_MAC_ADMIN","CAP_SYSLOG","CAP_WAKE_ALARM",
     "CAP_BLOCK_SUSPEND","CAP_AUDIT_READ","CAP_PERFMON","CAP_BPF","CAP_CHECKPOINT_RESTORE"] as $names
    | ($bnd | ascii_downcase | explode | reduce .[] as $c (0; . * 16 + (if $c >= 97 then $c - 87 else $c - 48 end))) as $b
    | [range(0; $names | length) | select((($b / pow(2; .)) | floor) % 2 == 0) | $names[.]] as $drop
    | if '"$2"' then
        '"$2"' |= with_entries(.value |= ((. // []) | map(select(. as $c | $drop | index($c) | not))))
      else . end' "$1" >"$1.ci-caps" && mv "$1.ci-caps" "$1"
}
[ -n "$bundle" ] && drop_missing_caps "$bundle/config.json" .process.capabilities
[ -n "$process" ] && drop_missing_caps "$process" .capabilities
exec runc "$@"
WRAPPER
    chmod 0755 "$wrapper"
    dockerd_args+=(--add-runtime "ci-runc=$wrapper" --default-runtime ci-runc)
  fi
  echo "ci-docker-setup: starting dockerd ${dockerd_args[*]}"
  setsid dockerd "${dockerd_args[@]}" >"$state/dockerd.log" 2>&1 </dev/null &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker version >/dev/null 2>&1; then
    echo "ci-docker-setup: dockerd did not answer within 60 s; its log:" >&2
    tail -n 40 "$state/dockerd.log" >&2
    exit 1
  fi
fi
echo "ci-docker-setup: engine $(docker version --format '{{.Server.Version}}') ready in $(($(date +%s) - start)) s"
