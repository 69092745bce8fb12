#!/usr/bin/env bash
# Builds the two base images the lab Dockerfiles need, on a machine that reaches Debian's mirror but no
# container registry (CI here). A machine with a registry does not need this: the Dockerfiles default to
# public images (debian:12-slim, node:20-bookworm-slim).
#
#   docker/offline-base-images.sh            # builds what is missing, prints the two image names
#
# - interceptor-ebpf-lab/debian:12  `debootstrap --variant=minbase bookworm` imported with `docker import`.
# - interceptor-ebpf-lab/node:20    that image plus this machine's own `node` binary (Debian's apt has only
#                                   nodejs 18; the Node 20 binary needs only glibc and libstdc++, which the
#                                   base has). The binary must be a Node 20 built for Debian 12's glibc.
#
# Overrides: EBPF_LAB_DEBIAN_IMAGE, EBPF_LAB_NODE_IMAGE (names to build), DEBIAN_MIRROR, NODE_BINARY.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_image="${EBPF_LAB_DEBIAN_IMAGE:-interceptor-ebpf-lab/debian:12}"
node_image="${EBPF_LAB_NODE_IMAGE:-interceptor-ebpf-lab/node:20}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
node_binary="${NODE_BINARY:-$(command -v node)}"
export DOCKER_BUILDKIT=0

log() { printf 'offline-base-images: %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if docker image inspect "$debian_image" >/dev/null 2>&1; then
  log "$debian_image already present"
else
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }
  start=$(date +%s)
  log "debootstrap --variant=minbase bookworm from $mirror (about 90 s)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
  }
  # The same sources a debian:12 image has, so `apt-get install` in a build gets security updates too.
  cat >"$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
  rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
  tar -C "$work/rootfs" -c . | docker import --change 'CMD ["bash"]' - "$debian_image" >/dev/null
  rm -rf "$work/rootfs"
  log "$debian_image built in $(($(date +%s) - start)) s"
fi

if docker image inspect "$node_image" >/dev/null 2>&1; then
  log "$node_image already present"
else
  version=$("$node_binary" --version)
  case "$version" in
    v20.*) ;;
    *) log "$node_binary is $version, not Node 20: set NODE_BINARY to a Node 20 binary"; exit 1 ;;
  esac
  mkdir -p "$work/node"
  cp "$node_binary" "$work/node/node"
  cp docker/node-from-binary.Dockerfile "$work/node/Dockerfile"
  docker build -q --build-arg "BASE_IMAGE=$debian_image" -t "$node_image" "$work/node" >/dev/null
  log "$node_image built ($version from $node_binary)"
fi
printf '%s\n%s\n' "$debian_image" "$node_image"
