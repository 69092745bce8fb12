#!/usr/bin/env bash
# `pnpm release:pack`: builds every target of package.json `napi.targets`, strips and checks the binaries,
# stages one platform package per target and the main package with exact optionalDependencies, and writes the
# tarballs a maintainer publishes into dist/:
#
#   dist/broker-interceptor-interceptor-ebpf-<version>.tgz                 the main package (JavaScript, types)
#   dist/broker-interceptor-interceptor-ebpf-linux-x64-gnu-<version>.tgz   addon + agent, glibc >= 2.28
#   dist/broker-interceptor-interceptor-ebpf-linux-x64-musl-<version>.tgz  addon (musl) + static agent
#   dist/broker-interceptor-interceptor-ebpf-linux-arm64-gnu-<version>.tgz
#   dist/broker-interceptor-interceptor-ebpf-linux-arm64-musl-<version>.tgz
#   dist/broker-interceptor-interceptor-ebpf-wasm32-wasi-<version>.tgz     contract API in WebAssembly, no dataplane
#
# How each kind of target is built (docs/release.md, "Targets"):
#   *-linux-gnu   cargo-zigbuild against glibc $GLIBC_FLOOR (`<triple>.<floor>`): addon and agent in one cargo run.
#   *-linux-musl  cargo-zigbuild: the agent static (musl's default, no shared library at all), the addon a shared
#                 object linked against musl's libc.so (`-C target-feature=-crt-static`, which a cdylib needs).
#                 The two need different RUSTFLAGS, so the addon has its own target dir.
#   wasm32-wasip1-threads  `napi build` (emnapi): the addon only, with the Linux-only dataplane left out.
# The eBPF objects embedded in the Linux binaries are compiled once per build from bpf/ with the host's headers
# (crates/core/build.rs): the same little-endian BPF for every target.
#
# Every declared target is built, or the script stops naming what is missing and how to get it: it never packs
# a main package whose optional dependency does not exist. Publishing is a separate, deliberate step.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dist="$root/dist"
# Release builds have their own target dirs, so they neither rebuild nor replace what `pnpm run build` made.
release_target_dir="$root/target/release-pack"
dylib_target_dir="$root/target/release-pack-musl-dylib"
# The commit the agents report in interceptor_ebpf_build_info{revision} (crates/agent/build.rs), "-dirty" when
# tracked files differ from it; a caller's INTERCEPTOR_EBPF_REVISION (e.g. from a source archive) wins.
if [[ -z "${INTERCEPTOR_EBPF_REVISION:-}" ]] && git -C "$root" rev-parse -q --verify HEAD >/dev/null 2>&1; then
  INTERCEPTOR_EBPF_REVISION=$(git -C "$root" rev-parse HEAD)
  [[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ]] || INTERCEPTOR_EBPF_REVISION+=-dirty
fi
export INTERCEPTOR_EBPF_REVISION="${INTERCEPTOR_EBPF_REVISION:-}"

say() { printf 'release:pack: %s\n' "$*"; }
die() { printf 'release:pack: %s\n' "$*" >&2; exit 1; }

manifest() { node -p "const m = require('./package.json'); $1"; }

# --- what this machine needs --------------------------------------------------------------------------------
# scripts/setup.sh installs pnpm and adds the Rust targets, but neither Node.js nor Rust itself.
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || die "needs \`$tool\` on PATH: install Node.js 20 or later (with npm)"
done
for tool in cargo rustc rustup; do
  command -v "$tool" >/dev/null 2>&1 || die "needs \`$tool\` on PATH: install Rust with rustup (https://rustup.rs)"
done
command -v pnpm >/dev/null 2>&1 || die "needs \`pnpm\` on PATH (bash scripts/setup.sh installs it)"
for tool in llvm-strip-19 llvm-readelf-19; do
  command -v "$tool" >/dev/null 2>&1 || die "needs \`$tool\`: apt-get install llvm-19 (bash scripts/setup.sh does)"
done
command -v cargo-zigbuild >/dev/null 2>&1 ||
  die "needs cargo-zigbuild for the Linux targets: python3 -m pip install cargo-zigbuild==0.24.1 ziglang==0.17.1 (bash scripts/setup.sh does)"
if ! command -v zig >/dev/null 2>&1 && ! python3 -c 'import ziglang' >/dev/null 2>&1; then
  die "needs zig for cargo-zigbuild: python3 -m pip install ziglang==0.17.1 (bash scripts/setup.sh does)"
fi
node -e 'require.resolve("emnapi")' >/dev/null 2>&1 ||
  die "needs the npm package emnapi for the wasm32 build: pnpm install --frozen-lockfile"

version=$(manifest 'm.version')
binary_name=$(manifest 'm.napi.binaryName')
scope=$(manifest 'm.napi.packageName')
mapfile -t targets < <(manifest "m.napi.targets.join('\n')")
((${#targets[@]} > 0)) || die "package.json napi.targets is empty"

suffix_of() { node scripts/platform-suffixes.js "$1"; }

installed_targets=$(rustup target list --installed)
missing_targets=()
for target in "${targets[@]}"; do
  case "$target" in
    *-unknown-linux-gnu | *-unknown-linux-musl | wasm32-wasip1-threads) ;;
    *) die "package.json napi.targets declares $target, which this flow does not know how to build" ;;
  esac
  grep -qx "$target" <<<"$installed_targets" || missing_targets+=("$target")
  suffix=$(suffix_of "$target")
  [[ -f "npm/$suffix/package.json" && -f "npm/$suffix/README.md" ]] || die "npm/$suffix/{package.json,README.md} missing for target $target"
  platform_version=$(node -p "require('./npm/$suffix/package.json').version")
  [[ "$platform_version" == "$version" ]] || die "npm/$suffix/package.json has version $platform_version, \
package.json has $version: run \`pnpm exec napi version\` and commit the result"
done
((${#missing_targets[@]} == 0)) || die "Rust targets not installed: ${missing_targets[*]}; run: rustup target add ${missing_targets[*]}"

documented_floor=$(sed -n "s/^const GLIBC_FLOOR = '\([0-9.]*\)'.*/\1/p" js/native.js)
[[ -n "$documented_floor" ]] || die "js/native.js has no GLIBC_FLOOR constant"

# --- builds ---------------------------------------------------------------------------------------------------
# `pnpm run build` regenerates binding.js/binding.d.ts, which the main package ships: they must be committed.
say "host build (binding.js, binding.d.ts)"
pnpm run build >/dev/null
if ! git diff --quiet -- binding.js binding.d.ts 2>/dev/null; then
  die "the build changed binding.js/binding.d.ts: commit the regenerated files first"
fi

rm -rf "$dist"
mkdir -p "$dist/stage"

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@" || die "$label failed (the output above says why)"
  say "$label: $((SECONDS - start)) s"
}

build_linux() {
  local target=$1
  if [[ "$target" == *-gnu ]]; then
    timed "cargo zigbuild $target.$documented_floor (addon + agent)" \
      cargo zigbuild --quiet --release --target "$target.$documented_floor" --target-dir "$release_target_dir" \
      -p interceptor-ebpf-node -p interceptor-ebpf-agent
    built_addon="$release_target_dir/$target/release/libinterceptor_ebpf_node.so"
  else
    timed "cargo zigbuild $target (static agent)" \
      cargo zigbuild --quiet --release --target "$target" --target-dir "$release_target_dir" -p interceptor-ebpf-agent
    timed "cargo zigbuild $target (addon against musl's libc.so)" \
      env RUSTFLAGS="-C target-feature=-crt-static" \
      cargo zigbuild --quiet --release --target "$target" --target-dir "$dylib_target_dir" -p interceptor-ebpf-node
    built_addon="$dylib_target_dir/$target/release/libinterceptor_ebpf_node.so"
  fi
  built_agent="$release_target_dir/$target/release/interceptor-ebpf"
  [[ -f "$built_addon" ]] || die "the $target build did not produce $built_addon"
  [[ -x "$built_agent" ]] || die "the $target build did not produce $built_agent"
}

# Newest GLIBC_x.y symbol version an ELF file needs (empty for none).
glibc_floor() {
  llvm-readelf-19 --dyn-syms --wide "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true
}
needed_libs() { llvm-readelf-19 --dynamic "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' '; }
elf_machine() { llvm-readelf-19 --file-header "$1" | sed -n 's/^ *Machine: *//p'; }

check_linux_binaries() {
  local target=$1 addon=$2 agent=$3 machine
  machine=$([[ "$target" == x86_64-* ]] && echo 'Advanced Micro Devices X86-64' || echo 'AArch64')
  for f in "$addon" "$agent"; do
    [[ "$(elf_machine "$f")" == "$machine" ]] || die "$f is built for $(elf_machine "$f"), not $machine"
  done
  if [[ -n "$INTERCEPTOR_EBPF_REVISION" ]]; then
    grep -qF "$INTERCEPTOR_EBPF_REVISION" "$agent" ||
      die "the $target agent does not carry revision $INTERCEPTOR_EBPF_REVISION for interceptor_ebpf_build_info"
  fi
  llvm-readelf-19 --dyn-syms --wide "$addon" | grep -qw napi_register_module_v1 ||
    die "$addon does not export napi_register_module_v1: not a Node addon"
  if [[ "$target" == *-gnu ]]; then
    local floor
    floor=$(printf '%s\n%s\n' "$(glibc_floor "$addon")" "$(glibc_floor "$agent")" | sort -V | tail -1)
    [[ "$floor" == "$documented_floor" ]] || die "the $target binaries need glibc $floor but js/native.js \
GLIBC_FLOOR (and the README, npm/*-gnu/README.md, docs/release.md) say $documented_floor: update them"
    say "glibc floor of $target (addon and agent): $floor"
  else
    # A static agent has no dynamic section at all; the addon may need only musl's libc (and libgcc_s, which
    # every Alpine Node image has: Node itself links it).
    [[ -z "$(needed_libs "$agent")" ]] || die "the $target agent is not static: it needs $(needed_libs "$agent")"
    local libs
    libs=$(needed_libs "$addon")
    for lib in $libs; do
      [[ "$lib" == libc.so || "$lib" == libgcc_s.so.1 ]] || die "the $target addon needs $lib (only libc.so and libgcc_s.so.1 are allowed)"
    done
    say "$target: static agent; the addon needs ${libs:-nothing}"
  fi
}

optional_deps="{}"
for target in "${targets[@]}"; do
  suffix=$(suffix_of "$target")
  stage="$dist/stage/$suffix"
  mkdir -p "$stage"
  cp "npm/$suffix/package.json" "npm/$suffix/README.md" LICENSE "$stage/"
  if [[ "$target" == wasm32-* ]]; then
    # napi writes the .wasm, its CommonJS loader and worker next to each other in --output-dir; the declaration
    # file it writes describes the wasm build's smaller export list and is not shipped (binding.d.ts is).
    wasm_out="$dist/stage/wasm-build"
    napi_wasm_build() {
      pnpm exec napi build --platform --release --target "$1" --no-js --dts unused.d.ts --output-dir "$wasm_out" \
        --target-dir "$release_target_dir" -p interceptor-ebpf-node >/dev/null
    }
    timed "napi build $target" napi_wasm_build "$target"
    for f in $(node -p "require('./npm/$suffix/package.json').files.filter((f) => !['LICENSE', 'README.md'].includes(f)).join(' ')"); do
      [[ -f "$wasm_out/$f" ]] || die "napi build did not write $f for $target"
      cp "$wasm_out/$f" "$stage/"
    done
    say "$binary_name.wasm32-wasi.wasm: $(stat -c %s "$stage/$binary_name.wasm32-wasi.wasm") bytes"
  else
    build_linux "$target"
    node_file="$binary_name.$suffix.node"
    cp "$built_addon" "$stage/$node_file"
    cp "$built_agent" "$stage/interceptor-ebpf"
    llvm-strip-19 --strip-unneeded "$stage/$node_file" "$stage/interceptor-ebpf"
    chmod 0755 "$stage/interceptor-ebpf"
    check_linux_binaries "$target" "$stage/$node_file" "$stage/interceptor-ebpf"
    say "$suffix: $node_file $(stat -c %s "$stage/$node_file") bytes, interceptor-ebpf $(stat -c %s "$stage/interceptor-ebpf") bytes (stripped)"
  fi
  # Every file the manifest lists must be staged, or npm pack would silently leave it out.
  for f in $(node -p "require('./npm/$suffix/package.json').files.join(' ')"); do
    [[ -f "$stage/$f" ]] || die "npm/$suffix/package.json lists $f, which the $target build did not stage"
  done
  (cd "$stage" && npm pack --silent --pack-destination "$dist" >/dev/null)
  optional_deps=$(node -p "JSON.stringify({ ...$optional_deps, '$scope-$suffix': '$version' })")
done

# --- the main package ---------------------------------------------------------------------------------------
# The files package.json lists, and a manifest without the development-only fields and with the platform
# packages as exact optional dependencies (what `napi pre-publish` would write).
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
expected=$((${#targets[@]} + 1))
written=$(find "$dist" -maxdepth 1 -name '*.tgz' | wc -l)
((written == expected)) || die "wrote $written tarballs, expected $expected (the main package and one per target)"

rm -rf "$dist/stage"
say "wrote:"
for tarball in "$dist"/*.tgz; do
  printf '  %s  %s bytes\n' "${tarball#"$root"/}" "$(stat -c %s "$tarball")"
done
