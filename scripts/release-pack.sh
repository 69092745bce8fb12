#!/usr/bin/env bash
# `pnpm release:pack`: builds the release binaries, strips them, stages the platform package(s) and the main
# package with exact optionalDependencies, and writes the tarballs a maintainer publishes into dist/:
#
#   dist/broker-interceptor-interceptor-ebpf-<version>.tgz
#   dist/broker-interceptor-interceptor-ebpf-<platform>-<version>.tgz   (one per target in package.json napi.targets)
#
# Every target declared in package.json `napi.targets` must be built here; a target this machine cannot build
# stops the script instead of producing a main package whose optional dependency does not exist.
# Publishing is a separate, deliberate step (docs/release.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dist="$root/dist"

say() { printf 'release:pack: %s\n' "$*"; }
die() { printf 'release:pack: %s\n' "$*" >&2; exit 1; }

for tool in node npm pnpm strip objdump cargo rustc; do
  command -v "$tool" >/dev/null 2>&1 || die "needs \`$tool\` on PATH"
done

manifest() { node -p "const m = require('./package.json'); $1"; }
version=$(manifest 'm.version')
binary_name=$(manifest 'm.napi.binaryName')
scope=$(manifest 'm.napi.packageName')
mapfile -t targets < <(manifest "m.napi.targets.join('\n')")

# napi-rs's package suffix of a Rust target triple (x86_64-unknown-linux-gnu -> linux-x64-gnu).
suffix_of() {
  # shellcheck disable=SC2016 # a JavaScript template literal, not a shell expansion
  node -e '
    const [arch, , os, abi] = process.argv[1].split("-")
    const cpu = { x86_64: "x64", aarch64: "arm64", i686: "ia32", armv7: "arm" }[arch] ?? arch
    console.log(abi === undefined ? `${os}-${cpu}` : `${os}-${cpu}-${abi}`)' "$1"
}
host_triple=$(rustc -vV | sed -n 's/^host: //p')

for target in "${targets[@]}"; do
  [[ "$target" == "$host_triple" ]] || die "package.json napi.targets declares $target, which this flow cannot build \
here (host $host_triple; no other Rust target is installed). Build it on a $target machine or remove it from \
napi.targets and npm/."
  suffix=$(suffix_of "$target")
  [[ -f "npm/$suffix/package.json" ]] || die "npm/$suffix/package.json is missing for target $target"
  platform_version=$(node -p "require('./npm/$suffix/package.json').version")
  [[ "$platform_version" == "$version" ]] || die "npm/$suffix/package.json has version $platform_version, \
package.json has $version: run \`pnpm exec napi version\` and commit the result"
done

# `pnpm run build` is one cargo invocation for the addon and the agent (package.json), so the core is compiled
# once, with one feature set, and both binaries come out of it.
say "building the addon and the agent (release)"
pnpm run build >/dev/null
if ! git diff --quiet -- binding.js binding.d.ts 2>/dev/null; then
  die "the build changed binding.js/binding.d.ts: commit the regenerated files first"
fi
# napi's `--platform` build passes `--target <triple>`, so both binaries are under target/<triple>/release.
target_dir=$(cargo metadata --no-deps --format-version 1 | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory')

rm -rf "$dist"
mkdir -p "$dist/stage"

# Newest GLIBC_x.y symbol version an ELF file needs.
glibc_floor() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}
documented_floor=$(sed -n "s/^const GLIBC_FLOOR = '\([0-9.]*\)'.*/\1/p" js/native.js)
[[ -n "$documented_floor" ]] || die "js/native.js has no GLIBC_FLOOR constant"

optional_deps="{}"
for target in "${targets[@]}"; do
  suffix=$(suffix_of "$target")
  node_file="$binary_name.$suffix.node"
  [[ -f "$node_file" ]] || die "$node_file was not produced by the build"
  stage="$dist/stage/$suffix"
  mkdir -p "$stage"
  cp "npm/$suffix/package.json" "npm/$suffix/README.md" LICENSE "$stage/"
  cp "$node_file" "$stage/"
  strip --strip-unneeded "$stage/$node_file"
  say "$node_file: $(stat -c %s "$node_file") bytes, stripped $(stat -c %s "$stage/$node_file") bytes"
  floor=$(glibc_floor "$stage/$node_file")
  # The agent daemon ships in the platform package next to the addon, as `interceptor-ebpf`: where
  # bin/interceptor-ebpf.js looks for it.
  agent_bin="$target_dir/$target/release/interceptor-ebpf"
  [[ -x "$agent_bin" ]] || die "\`pnpm run build\` did not produce the agent binary $agent_bin"
  node -e 'process.exit(require(process.argv[1]).files.includes("interceptor-ebpf") ? 0 : 1)' "$root/npm/$suffix/package.json" ||
    die "npm/$suffix/package.json \`files\` does not list interceptor-ebpf: npm pack would leave the agent out"
  cp "$agent_bin" "$stage/interceptor-ebpf"
  strip --strip-unneeded "$stage/interceptor-ebpf"
  chmod 0755 "$stage/interceptor-ebpf"
  say "interceptor-ebpf (agent): $(stat -c %s "$agent_bin") bytes, stripped $(stat -c %s "$stage/interceptor-ebpf") bytes"
  agent_floor=$(glibc_floor "$stage/interceptor-ebpf")
  floor=$(printf '%s\n%s\n' "$floor" "$agent_floor" | sort -V | tail -1)
  if [[ "$target" == *-gnu ]]; then
    [[ "$floor" == "$documented_floor" ]] || die "the $suffix binaries need glibc $floor but js/native.js \
GLIBC_FLOOR (and the README, npm/$suffix/README.md, docs/release.md) say $documented_floor: update them"
    say "glibc floor of $suffix: $floor"
  fi
  (cd "$stage" && npm pack --silent --pack-destination "$dist" >/dev/null)
  optional_deps=$(node -p "JSON.stringify({ ...$optional_deps, '$scope-$suffix': '$version' })")
done

# The main package: the files package.json lists, and a manifest without the development-only fields and with
# the platform packages as exact optional dependencies (what `napi pre-publish` would write).
main_stage="$dist/stage/main"
mkdir -p "$main_stage"
node - "$main_stage" "$optional_deps" <<'EOF'
const fs = require('node:fs')
const path = require('node:path')
const [stage, optional] = process.argv.slice(2)
const m = JSON.parse(fs.readFileSync('package.json', 'utf8'))
for (const entry of m.files) {
  const from = entry.replace(/\/$/, '')
  if (!fs.existsSync(from)) continue
  fs.cpSync(from, path.join(stage, from), { recursive: true })
}
delete m.scripts
delete m.devDependencies
m.optionalDependencies = JSON.parse(optional)
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(m, null, 2)}\n`)
EOF
(cd "$main_stage" && npm pack --silent --pack-destination "$dist" >/dev/null)

# Nothing from the build tree, the benchmarks or the tests may ride along.
for tarball in "$dist"/*.tgz; do
  if tar -tzf "$tarball" | grep -E '^package/(target|bench|__test__|fuzz|crates|src|node_modules)/'; then
    die "$(basename "$tarball") contains files that must not be published (listed above)"
  fi
done

rm -rf "$dist/stage"
say "wrote:"
for tarball in "$dist"/*.tgz; do
  printf '  %s  %s bytes\n' "${tarball#"$root"/}" "$(stat -c %s "$tarball")"
done
