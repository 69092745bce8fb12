#!/usr/bin/env bash
# Builds the project's images with the classic builder (no BuildKit: this works with any Docker engine,
# including Debian's docker.io without buildx). Each image gets a small staged build context, so nothing
# from target/ or node_modules is sent to the engine but the files the image needs.
#
#   docker/build.sh agent          broker-interceptor/interceptor-ebpf-agent:dev  (docker/agent.Dockerfile)
#   docker/build.sh test-service   broker-interceptor/interceptor-node-test:dev   (docker/interceptor-node-test.Dockerfile)
#   docker/build.sh ebpf-host      broker-interceptor/interceptor-ebpf-host:dev   (docker/ebpf-host.Dockerfile)
#   docker/build.sh all
#
# Base images are build arguments with public defaults; pass local ones on a machine without a registry
# (docker/offline-base-images.sh builds them):
#   NODE_IMAGE   (node:20-bookworm-slim)   base of the test service image
#   DEBIAN_IMAGE (debian:12-slim)          base of the agent and ebpf-host images
# Image names: AGENT_IMAGE, EBPF_LAB_NESTED_IMAGE, EBPF_LAB_HOST_IMAGE.
# The agent binary is built here with cargo (release) and copied into the images: it must be built on a
# glibc no newer than the base image's (Debian 12: glibc 2.36).
set -euo pipefail
cd "$(dirname "$0")/.."

export DOCKER_BUILDKIT=0
agent_image="${AGENT_IMAGE:-broker-interceptor/interceptor-ebpf-agent:dev}"
nested_image="${EBPF_LAB_NESTED_IMAGE:-broker-interceptor/interceptor-node-test:dev}"
host_image="${EBPF_LAB_HOST_IMAGE:-broker-interceptor/interceptor-ebpf-host:dev}"
build_args=()
[[ -n "${NODE_IMAGE:-}" ]] && build_args+=(--build-arg "NODE_IMAGE=$NODE_IMAGE")
[[ -n "${DEBIAN_IMAGE:-}" ]] && build_args+=(--build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE")

log() { printf 'docker/build: %s\n' "$*" >&2; }

agent_binary() {
  # The same packages and target as `pnpm run build`: after it, this rebuilds nothing.
  local triple
  triple=$(rustc -vV | sed -n 's/^host: //p')
  cargo build --release --quiet --target "$triple" -p interceptor-ebpf-node -p interceptor-ebpf-agent \
    --bin interceptor-ebpf >&2
  local bin="target/$triple/release/interceptor-ebpf"
  [[ -x "$bin" ]] || { log "cargo did not produce $bin"; exit 1; }
  printf '%s\n' "$bin"
}

build() { # image dockerfile context
  local start
  start=$(date +%s)
  cp "$2" "$3/Dockerfile"
  # --quiet prints the image id only; the build log is shown when the build fails.
  if ! docker build "${build_args[@]}" -t "$1" "$3" >"$3.log" 2>&1; then
    tail -n 40 "$3.log" >&2
    log "building $1 failed"
    if grep -qE 'registry|pull access denied|manifest unknown|no such host' "$3.log"; then
      log "the base image could not be pulled: without a registry, build local ones with docker/offline-base-images.sh and pass NODE_IMAGE=... DEBIAN_IMAGE=..."
    fi
    exit 1
  fi
  log "$1 built in $(($(date +%s) - start)) s"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)
[[ " ${targets[*]} " == *" all "* ]] && targets=(agent test-service ebpf-host)
for target in "${targets[@]}"; do
  ctx="$work/$target"
  mkdir -p "$ctx"
  case "$target" in
    agent)
      cp "$(agent_binary)" "$ctx/interceptor-ebpf"
      build "$agent_image" docker/agent.Dockerfile "$ctx"
      ;;
    test-service)
      mkdir -p "$ctx/test-service"
      cp test-service/*.mjs "$ctx/test-service/"
      build "$nested_image" docker/interceptor-node-test.Dockerfile "$ctx"
      ;;
    ebpf-host)
      cp "$(agent_binary)" "$ctx/interceptor-ebpf"
      cp docker/host-init.sh "$ctx/host-init.sh"
      build "$host_image" docker/ebpf-host.Dockerfile "$ctx"
      ;;
    *)
      log "unknown image '$target' (agent | test-service | ebpf-host | all)"
      exit 2
      ;;
  esac
done
