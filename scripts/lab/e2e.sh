#!/usr/bin/env bash
# The labs end to end, as CI runs them (scripts/test-all.sh). Each stage brings its lab up, checks it from the
# outside, takes it down, and checks that nothing it made is left.
#
#   scripts/lab/e2e.sh [native] [docker] [compose]      (default: all three)
#
#   native   pnpm lab (the broker by name through the lab's resolver), lab:status, lab:down; then no cgroup,
#            pin, process, state or listener is left
#   docker   pnpm docker:ebpf-lab (images rebuilt), curl localhost:$EBPF_LAB_PORT/health, :status (a refused
#            direct call with its reason code), :down; then again with every EBPF_LAB_* override set; then no
#            container, network or volume of the lab is left
#   compose  docker/compose.yaml: the agent (its capabilities, read-only cgroupfs, the socket volume) and the
#            non-root controller, which applies the policy through the socket; then down, no pin left
#
# Needs root (all stages) and a Docker engine (docker, compose). Without them a stage prints SKIPPED, except
# under CI=true, where a skip is a failure. Without a registry, the Docker stages use local base images
# (docker/offline-base-images.sh) unless NODE_IMAGE and DEBIAN_IMAGE name others.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lab/attached-programs.sh
source scripts/lab/attached-programs.sh

stages=("$@")
((${#stages[@]})) || stages=(native docker compose)
ci="${CI:-false}"
results=()

skip() { # stage reason
  if [[ "$ci" == true ]]; then
    echo "lab-e2e: $1: cannot run under CI: $2" >&2
    exit 1
  fi
  echo "SKIPPED lab-e2e $1: $2"
  results+=("$1: skipped ($2)")
}

elapsed() { echo "$(($(date +%s) - $1)) s"; }

# What to run if a stage fails half-way (the script stops at the first failure): set by each stage while its
# lab is up, cleared when the stage has taken it down itself.
cleanup=""
trap 'if [[ -n "$cleanup" ]]; then echo "lab-e2e: cleaning up after a failure" >&2; eval "$cleanup"; fi' EXIT

base_images() {
  if [[ -z "${NODE_IMAGE:-}" || -z "${DEBIAN_IMAGE:-}" ]]; then
    mapfile -t base < <(bash docker/offline-base-images.sh)
    export DEBIAN_IMAGE="${DEBIAN_IMAGE:-${base[0]}}" NODE_IMAGE="${NODE_IMAGE:-${base[1]}}"
  fi
}

native() {
  local t
  t=$(date +%s)
  [[ $(id -u) -eq 0 ]] || { skip native "needs root"; return; }
  cleanup='bash scripts/lab/native/down.sh || true'
  pnpm -s lab
  pnpm -s lab:status >/dev/null
  curl -sf localhost:3000/health >/dev/null
  pnpm -s lab:down
  cleanup=""
  # Nothing left: the lab's cgroup, pins, state, processes, listeners.
  local cg2 bpffs
  cg2=$(awk '$(NF-2) == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
  bpffs=$(awk '$(NF-2) == "bpf" {print $5; exit}' /proc/self/mountinfo)
  [[ ! -e "$cg2/interceptor-ebpf-lab" ]] || { echo "lab-e2e: native: cgroup left" >&2; return 1; }
  [[ -z "$bpffs" || ! -e "$bpffs/interceptor-ebpf-lab" ]] || { echo "lab-e2e: native: pins left" >&2; return 1; }
  [[ ! -e /run/interceptor-ebpf-lab ]] || { echo "lab-e2e: native: state left" >&2; return 1; }
  for port in 3000 8081 8082 5300; do
    [[ -z "$(ss -Hltn "sport = :$port")" ]] || { echo "lab-e2e: native: port $port still listening" >&2; return 1; }
  done
  # The lab's resolver listens on UDP as well.
  [[ -z "$(ss -Hlun "sport = :5300")" ]] || { echo "lab-e2e: native: UDP port 5300 still bound" >&2; return 1; }
  results+=("native: up, verified, status, down, nothing left ($(elapsed "$t"))")
}

docker_lab() {
  local t
  t=$(date +%s)
  [[ $(id -u) -eq 0 ]] || { skip docker "needs root"; return; }
  docker version >/dev/null 2>&1 || { skip docker "no Docker engine answers"; return; }
  base_images
  cleanup='bash scripts/lab/docker/down.sh || true'
  pnpm -s docker:ebpf-lab
  curl -sf localhost:3000/health >/dev/null
  pnpm -s docker:ebpf-lab:status
  pnpm -s docker:ebpf-lab:down
  cleanup=""
  [[ -z "$(docker ps -aq --filter label=io.broker-interceptor.ebpf-lab)" ]] || { echo "lab-e2e: docker: containers left" >&2; return 1; }
  results+=("docker: up (images built), health on :3000, status, down ($(elapsed "$t"))")

  # Every override at once: other names, ports and image tags.
  t=$(date +%s)
  docker tag broker-interceptor/interceptor-ebpf-host:dev broker-interceptor/interceptor-ebpf-host:e2e
  docker tag broker-interceptor/interceptor-node-test:dev broker-interceptor/interceptor-node-test:e2e
  local overrides=(EBPF_LAB_PORT=3310 EBPF_LAB_HOST_IMAGE=broker-interceptor/interceptor-ebpf-host:e2e
    EBPF_LAB_HOST_CONTAINER=e2e-ebpf-lab EBPF_LAB_NESTED_IMAGE=broker-interceptor/interceptor-node-test:e2e
    EBPF_LAB_NESTED_CONTAINER=e2e-nested EBPF_LAB_BROKER_TUNNEL_PORT=18181 EBPF_LAB_REQUIRE_HOST_PORT=1)
  local untag='docker image rm broker-interceptor/interceptor-ebpf-host:e2e broker-interceptor/interceptor-node-test:e2e >/dev/null 2>&1 || true'
  cleanup="env ${overrides[*]} bash scripts/lab/docker/down.sh || true; $untag"
  env "${overrides[@]}" bash scripts/lab/docker/up.sh
  curl -sf localhost:3310/health >/dev/null
  [[ "$(docker exec e2e-ebpf-lab docker ps --format '{{.Names}}')" == e2e-nested ]] || { echo "lab-e2e: docker: nested container name not applied" >&2; return 1; }
  env "${overrides[@]}" bash scripts/lab/docker/status.sh >/dev/null
  env "${overrides[@]}" EBPF_LAB_REQUIRE_HOST_PORT=0 bash scripts/lab/docker/status.sh >/dev/null
  env "${overrides[@]}" bash scripts/lab/docker/down.sh
  cleanup=""
  eval "$untag"
  [[ -z "$(docker ps -aq --filter label=io.broker-interceptor.ebpf-lab)$(docker network ls -q --filter label=io.broker-interceptor.ebpf-lab)$(docker volume ls -q --filter label=io.broker-interceptor.ebpf-lab)" ]] ||
    { echo "lab-e2e: docker: lab objects left" >&2; return 1; }
  results+=("docker: every EBPF_LAB_* override, up/status/down, nothing left ($(elapsed "$t"))")
}

compose() {
  local t
  t=$(date +%s)
  [[ $(id -u) -eq 0 ]] || { skip compose "needs root"; return; }
  docker version >/dev/null 2>&1 || { skip compose "no Docker engine answers"; return; }
  local dc=()
  if command -v docker-compose >/dev/null 2>&1; then dc=(docker-compose); elif docker compose version >/dev/null 2>&1; then dc=(docker compose); else
    skip compose "neither docker-compose nor the compose plugin is installed"
    return
  fi
  base_images
  bash docker/build.sh agent
  # The agent's cgroup root is a cgroup of this test, not the host's root: nothing else on the machine
  # runs the programs. Its pins go to a directory of this test.
  local cg2 bpffs project
  cg2=$(awk '$(NF-2) == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
  bpffs=$(awk '$(NF-2) == "bpf" {print $5; exit}' /proc/self/mountinfo)
  project="interceptor-ebpf-e2e-$$"
  mkdir -p "$cg2/$project"
  export BROKER_EBPF_CGROUP_ROOT="$cg2/$project" BROKER_EBPF_PIN_DIR="$bpffs/$project"
  dc+=(-p "$project" -f docker/compose.yaml)
  local remove_cgroups="rmdir '$cg2/$project' 2>/dev/null || true"
  cleanup="${dc[*]} down -v --remove-orphans >/dev/null 2>&1 || true; rm -rf '$bpffs/$project'; $remove_cgroups"
  "${dc[@]}" up -d
  local status=""
  for _ in $(seq 1 60); do
    status=$("${dc[@]}" exec -T agent interceptor-ebpf ctl status --json 2>/dev/null || true)
    # The controller applies the policy file once more: generation 2 proves a non-root peer was authorized.
    node scripts/lab/check-verdicts.mjs --quiet --status "$status" --generation 2 && break
    sleep 1
  done
  if ! node scripts/lab/check-verdicts.mjs --status "$status" --generation 2; then
    "${dc[@]}" logs --tail 30 >&2
    echo "lab-e2e: compose: the controller's policy was not applied" >&2
    return 1
  fi
  "${dc[@]}" down -v --remove-orphans
  # The agent is gone, its enforcement is not: the programs stay attached through the pinned links. How many
  # depends on the bypass layers this kernel offers, and the agent's status said which ones are in force.
  # They are attached at the top of the cgroup2 mount: the ones of this project are those its pin dir holds.
  local ids attached id
  mapfile -t ids < <(attached_programs "$bpffs/$project" "$cg2")
  node scripts/lab/check-verdicts.mjs --status "$status" --attached-programs "${#ids[@]}" ||
    { echo "lab-e2e: compose: after down, the pinned programs must stay attached" >&2; return 1; }
  # Removing the pins is what removes enforcement (docs/deployment.md): the programs are gone with them.
  rm -rf "${bpffs:?}/$project"
  attached=0
  for id in "${ids[@]}"; do
    bpftool prog show id "$id" >/dev/null 2>&1 && attached=$((attached + 1))
  done
  [[ "$attached" -eq 0 ]] || { echo "lab-e2e: compose: $attached programs still attached after the pins went" >&2; return 1; }
  cleanup=""
  eval "$remove_cgroups"
  [[ ! -e "$cg2/$project" ]] || { echo "lab-e2e: compose: cgroup $cg2/$project left" >&2; return 1; }
  [[ ! -e "$bpffs/$project" ]] || { echo "lab-e2e: compose: pins left in $bpffs/$project" >&2; return 1; }
  results+=("compose: agent (cap_drop ALL + 3, read-only cgroupfs) + non-root controller applying the policy; pinned after down, gone with the pins ($(elapsed "$t"))")
}

for stage in "${stages[@]}"; do
  case "$stage" in
    native) native ;;
    docker) docker_lab ;;
    compose) compose ;;
    *) echo "lab-e2e: unknown stage '$stage' (native | docker | compose)" >&2; exit 2 ;;
  esac
done
echo
printf 'lab-e2e: %s\n' "${results[@]}"
