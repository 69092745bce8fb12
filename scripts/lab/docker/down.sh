#!/usr/bin/env bash
# Removes the Docker lab (pnpm docker:ebpf-lab:down): every container, network and volume that
# scripts/lab/docker/up.sh created, found by the lab's label, and nothing else. The nested engine, the agent,
# its bpffs and its cgroups live inside the host container and go with it (the nested containers' data is in
# the lab's volume, removed too). Built images are kept; EBPF_LAB_REMOVE_IMAGES=1 removes them as well.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=scripts/lab/docker/common.sh
source scripts/lab/docker/common.sh
require_engine

mapfile -t containers < <(docker ps -aq --filter "label=$lab_label")
if ((${#containers[@]})); then
  # The host container first: its SIGTERM lets host-init stop the nested engine and the agent.
  docker stop -t 10 "$host_container" >/dev/null 2>&1 || true
  docker rm -f "${containers[@]}" >/dev/null
fi
mapfile -t networks < <(docker network ls -q --filter "label=$lab_label")
((${#networks[@]})) && docker network rm "${networks[@]}" >/dev/null
mapfile -t volumes < <(docker volume ls -q --filter "label=$lab_label")
((${#volumes[@]})) && docker volume rm "${volumes[@]}" >/dev/null
if [[ "${EBPF_LAB_REMOVE_IMAGES:-0}" == 1 ]]; then
  for image in "$host_image" "$nested_image"; do
    docker image rm "$image" >/dev/null 2>&1 || true
  done
fi

left=$(
  docker ps -aq --filter "label=$lab_label"
  docker network ls -q --filter "label=$lab_label"
  docker volume ls -q --filter "label=$lab_label"
)
if [[ -n "$left" ]]; then
  say "could not remove: $left"
  exit 1
fi
say "removed ${#containers[@]} container(s), ${#networks[@]} network(s), ${#volumes[@]} volume(s)"
