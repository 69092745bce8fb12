#!/usr/bin/env bash
# The contract tests of __test__/ against the WebAssembly build that `pnpm release:pack` put into
# dist/broker-interceptor-interceptor-ebpf-wasm32-wasi-<version>.tgz, with no native addon anywhere in reach:
#
#   bash scripts/platforms/check-wasm.sh <dist-dir>
#
# A copy of the package's JavaScript (index.js, binding.js, js/) gets the tarball's .wasm, its loader and worker
# beside it, and no .node file; the repo's node_modules serves @napi-rs/wasm-runtime and the test dependencies.
# As root, the ControlClient suite runs against the agent of the linux-x64-gnu tarball (INTERCEPTOR_EBPF_BIN).
# No NAPI_RS_FORCE_WASI: the loader must fall back to WebAssembly by itself, as on a platform without a native
# package. Every test file runs except the two that are about the native addon itself (listed below).
# shellcheck disable=SC2016 # the `node -e` program is JavaScript: its ${...} are template literals
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

die() { printf 'check-wasm: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 1 && -d "$1" ]] || die "usage: bash scripts/platforms/check-wasm.sh <dist-dir>"
dist=$(cd "$1" && pwd)
version=$(node -p "require('$root/package.json').version")
tarball="$dist/broker-interceptor-interceptor-ebpf-wasm32-wasi-$version.tgz"
[[ -f "$tarball" ]] || die "$tarball not found: run pnpm release:pack first"

work=$(mktemp -d "${TMPDIR:-/tmp}/interceptor-ebpf-wasm.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Readable by the other uid the control-client suite runs a client as.
chmod 0755 "$work"
pkg="$work/package"
mkdir -p "$pkg"
for f in index.js index.d.ts binding.js package.json js bin bench __test__; do
  cp -r "$root/$f" "$pkg/$f"
done
ln -s "$root/node_modules" "$pkg/node_modules"
mkdir "$work/tarball"
tar -xzf "$tarball" -C "$work/tarball"
for f in $(node -p "require('$work/tarball/package/package.json').files.filter((f) => !['LICENSE', 'README.md'].includes(f)).join(' ')"); do
  cp "$work/tarball/package/$f" "$pkg/"
done
if find "$pkg" -name '*.node' -not -path "$pkg/node_modules/*" | grep .; then die "a native addon is in the copy (above)"; fi
# The control-client suite drives a real agent (a separate process, not the addon) when run as root: the
# linux-x64-gnu package's agent from the same dist, so ControlClient on WebAssembly talks to the shipped agent.
agent_tarball="$dist/broker-interceptor-interceptor-ebpf-linux-x64-gnu-$version.tgz"
[[ -f "$agent_tarball" ]] || die "$agent_tarball not found: run pnpm release:pack first"
mkdir "$work/agent"
tar -xzf "$agent_tarball" -C "$work/agent" package/interceptor-ebpf
export INTERCEPTOR_EBPF_BIN="$work/agent/package/interceptor-ebpf"

# Not run here: interceptor.test.mjs is the dataplane (the WebAssembly build has none: checked below instead),
# loader.test.mjs checks the native loader's errors on a copy without any binary.
skipped=(interceptor.test.mjs loader.test.mjs)
mapfile -t files < <(find "$pkg/__test__" -maxdepth 1 -name '*.test.mjs' -printf '%f\n' | sort | grep -vxF -f <(printf '%s\n' "${skipped[@]}"))
((${#files[@]} > 0)) || die "no test files"

cd "$pkg"
unset NAPI_RS_FORCE_WASI NAPI_RS_NATIVE_LIBRARY_PATH
node --disable-warning=ExperimentalWarning -e '
  const ebpf = require("./index.js")
  if (ebpf.bindingTarget !== "wasm32-wasi") throw new Error(`the copy loaded the ${ebpf.bindingTarget} build`)
  ebpf.Interceptor.load().then(
    () => { console.error("Interceptor.load resolved in the WebAssembly build"); process.exit(1) },
    (e) => {
      if (!(e instanceof ebpf.DataplaneError) || e.code !== "ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM" || !/cgroup v2/.test(e.message)) throw e
      console.log(`check-wasm: bindingTarget ${ebpf.bindingTarget}; Interceptor.load rejects with ${e.code}`)
    })'
start=$SECONDS
echo "check-wasm: node --test ${files[*]} (skipped: ${skipped[*]})"
node --disable-warning=ExperimentalWarning --test "${files[@]/#/__test__/}"
echo "check-wasm: contract tests on the WebAssembly build passed in $((SECONDS - start)) s"
