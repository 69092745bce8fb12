#!/usr/bin/env bash
# The package as a user gets it: `pnpm release:pack`, then a fresh project installs the tarballs the way the
# README's "Installing from tarballs" says, and checks, with TypeScript `strict` and `moduleResolution:
# nodenext`:
#   - the shipped files (LICENSE, README whose links resolve, no tests/target/bench), the glibc floor in the README;
#   - ESM `import`, `import x = require()` in a .cts file and plain `require()` of the original package's API,
#     compiled and run (__test__/consumer/);
#   - type errors where the original had them (__test__/consumer/fail/ must fail, with exactly the marked errors);
#   - twice: as installed here (linux x64 glibc: the native platform package, with the WebAssembly one beside it),
#     and as on a platform with no native package (pnpm told `supportedArchitectures` darwin/arm64, and npm
#     `--os=darwin --cpu=arm64`): only the main and the wasm32-wasi packages are installed, the same programs
#     compile and run on the WebAssembly build, and `Interceptor.load` rejects with the platform error;
#   - with no optional dependency at all, `pnpm install` succeeds and the first `require()` names what is missing.
# Needs only the npm registry (through the pnpm store), no other network.
# shellcheck disable=SC2016 # the `node -e` programs are JavaScript: their ${...} are template literals
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
fixture="$root/__test__/consumer"

current=""
step() {
  current=$*
  printf '\n-- consumer: %s\n' "$*"
}
fail() { printf 'consumer-test: FAILED: %s\n' "$*" >&2; exit 1; }
# Subshells below run without `|| fail` on purpose: errexit is off inside a `cmd || ...` list, so a failing
# command there would go unnoticed. A failure anywhere stops the script and names the step it was in.
trap 'status=$?; [[ $status -eq 0 ]] || printf "consumer-test: FAILED in step: %s\n" "$current" >&2' EXIT

step "pack"
bash scripts/release-pack.sh
version=$(node -p "require('./package.json').version")
scope=$(node -p "require('./package.json').napi.packageName")
main_tgz="broker-interceptor-interceptor-ebpf-$version.tgz"
platform_pkg="$scope-linux-x64-gnu"
wasm_pkg="$scope-wasm32-wasi"
wasm_tgz="broker-interceptor-interceptor-ebpf-wasm32-wasi-$version.tgz"
mapfile -t platform_suffixes < <(node scripts/platform-suffixes.js)
ts_version=$(node -p "require('typescript/package.json').version")
types_node_version=$(node -p "require('@types/node/package.json').version")

work=$(mktemp -d "${TMPDIR:-/tmp}/interceptor-ebpf-consumer.XXXXXX")
trap 'status=$?; rm -rf "$work"; [[ $status -eq 0 ]] || printf "consumer-test: FAILED in step: %s\n" "$current" >&2' EXIT

step "shipped files"
for forbidden in '^package/(target|bench|__test__|fuzz|crates|src|examples|docker|scripts|node_modules|dist)/' '\.tgz$' '\.test\.' '\.test-d\.ts$'; do
  for tgz in dist/*.tgz; do
    if tar -tzf "$tgz" | grep -E "$forbidden"; then fail "$tgz ships files matching $forbidden (listed above)"; fi
  done
done
# (Listings are read whole: `grep -q` closing a pipe early would fail the pipeline under pipefail.)
main_list=$(tar -tzf "dist/$main_tgz")
for required in LICENSE README.md CHANGELOG.md package.json index.js index.d.ts binding.js js/native.js bin/interceptor-ebpf.js; do
  grep -qx "package/$required" <<<"$main_list" || fail "$main_tgz lacks $required"
done
for suffix in "${platform_suffixes[@]}"; do
  tgz="broker-interceptor-interceptor-ebpf-$suffix-$version.tgz"
  [[ -f "dist/$tgz" ]] || fail "release:pack did not write dist/$tgz"
  list=$(tar -tzf "dist/$tgz")
  if [[ "$suffix" == wasm32-wasi ]]; then
    required=(LICENSE README.md package.json interceptor-ebpf.wasm32-wasi.wasm interceptor-ebpf.wasi.cjs wasi-worker.mjs)
  else
    required=(LICENSE README.md package.json "interceptor-ebpf.$suffix.node" interceptor-ebpf)
  fi
  for f in "${required[@]}"; do
    grep -qx "package/$f" <<<"$list" || fail "$tgz lacks $f"
  done
done
node -e '
  const m = JSON.parse(require("child_process").execFileSync("tar", ["-xzOf", process.argv[1], "package/package.json"]))
  const want = process.argv.slice(2)
  const got = Object.keys(m.optionalDependencies ?? {})
  if (JSON.stringify(got.sort()) !== JSON.stringify(want.sort())) throw new Error(`optionalDependencies ${got} != ${want}`)
  for (const [name, v] of Object.entries(m.optionalDependencies)) if (v !== m.version) throw new Error(`${name}@${v} is not the exact version ${m.version}`)
  for (const field of ["os", "cpu", "libc"]) if (field in m) throw new Error(`the main package restricts ${field}: it must install everywhere`)
  console.log(`main package: ${got.length} exact optional dependencies, no os/cpu/libc restriction`)
' "dist/$main_tgz" "${platform_suffixes[@]/#/$scope-}" || fail "main package manifest"
node -e '
  const m = JSON.parse(require("child_process").execFileSync("tar", ["-xzOf", process.argv[1], "package/package.json"]))
  for (const field of ["os", "cpu", "libc"]) if (field in m) throw new Error(`the wasm32-wasi package restricts ${field}: package managers would skip it where it is needed`)
' "dist/$wasm_tgz" || fail "wasm32-wasi package manifest"
license=$(tar -xzOf "dist/$main_tgz" package/LICENSE)
grep -q 'Apache License' <<<"$license" || fail "LICENSE is not the Apache-2.0 text"

# A fresh project, set up as the README tells a user to: every tarball in vendor/, each platform package
# overridden to its tarball (the main package's optional dependencies would otherwise be looked up in the
# registry). $2: extra lines for pnpm-workspace.yaml.
setup_project() {
  local dir=$1 extra=${2:-}
  mkdir -p "$dir/vendor"
  cp dist/*.tgz "$dir/vendor/"
  printf '{ "name": "consumer-app", "version": "0.0.0", "private": true }\n' >"$dir/package.json"
  {
    printf 'overrides:\n'
    for suffix in "${platform_suffixes[@]}"; do
      printf "  '%s': file:vendor/broker-interceptor-interceptor-ebpf-%s-%s.tgz\n" "$scope-$suffix" "$suffix" "$version"
    done
    printf '%s' "$extra"
  } >"$dir/pnpm-workspace.yaml"
}

# The original API's callers, compiled with strict TypeScript and run as ESM, as .cts and as plain CommonJS;
# then the build that served them ($2: native or wasm32-wasi) is the expected one.
consumer_programs() {
  local dir=$1 expected=$2
  cp -r "$fixture/tsconfig.json" "$fixture/src" "$fixture/plain.cjs" "$dir/"
  (
    cd "$dir"
    pnpm add --prefer-offline -D "typescript@$ts_version" "@types/node@$types_node_version" >>install.log 2>&1 || { cat install.log; exit 1; }
    pnpm exec tsc -p tsconfig.json
    node out/esm.mjs
    node out/cjs.cjs
    node plain.cjs
    node -e '
      const { bindingTarget, Interceptor, DataplaneError } = require("@broker-interceptor/interceptor-ebpf")
      const expected = process.argv[1]
      if (bindingTarget !== expected) throw new Error(`served by ${bindingTarget}, expected ${expected}`)
      if (expected === "wasm32-wasi") {
        Interceptor.load().then(
          () => { throw new Error("Interceptor.load resolved in the WebAssembly build") },
          (e) => {
            if (!(e instanceof DataplaneError) || e.code !== "ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM") throw e
            console.log(`Interceptor.load: ${e.code}: ${e.message.slice(0, 160)}...`)
          })
      }
      console.log(`served by the ${bindingTarget} build`)' "$expected"
  )
}

step "install into a fresh project with pnpm add (this machine: linux x64 glibc)"
app="$work/app"
setup_project "$app"
cp -r "$fixture/tsconfig.fail.json" "$fixture/fail" "$app/"
(
  cd "$app"
  pnpm add --prefer-offline "./vendor/$main_tgz" >install.log 2>&1 || { cat install.log; exit 1; }
  # On a supported platform nothing may be reported unsupported (the other platforms' packages are skipped
  # silently, as on a registry install).
  if grep -iE 'unsupported|optional dependenc' install.log; then echo "pnpm warned while installing (above)" >&2; exit 1; fi
)
installed="$app/node_modules/@broker-interceptor/interceptor-ebpf"
store_dir=$(dirname "$(readlink -f "$installed")")
for pkg in interceptor-ebpf-linux-x64-gnu interceptor-ebpf-wasm32-wasi; do
  [[ -d "$store_dir/$pkg" ]] || fail "$pkg was not installed next to the main package"
done
for pkg in interceptor-ebpf-linux-x64-musl interceptor-ebpf-linux-arm64-gnu interceptor-ebpf-linux-arm64-musl; do
  [[ ! -e "$store_dir/$pkg" ]] || fail "$pkg (another platform) was installed on linux x64 glibc"
done

step "README links resolve inside the package or are absolute URLs; the glibc floor is stated"
node - "$installed" "$(dirname "$(readlink -f "$installed")")/interceptor-ebpf-linux-x64-gnu" <<'EOF' || fail "README links"
const fs = require('node:fs')
const path = require('node:path')
let bad = 0
for (const dir of process.argv.slice(2)) {
  const text = fs.readFileSync(path.join(dir, 'README.md'), 'utf8')
  // Inline links and images, and reference definitions; code spans are not links.
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '')
  const targets = [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g), ...prose.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1])
  for (const target of targets) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue
    const file = decodeURIComponent(target.split('#')[0])
    if (!fs.existsSync(path.join(dir, file))) {
      console.error(`${path.basename(dir)}/README.md links to ${target}, which is not in the package`)
      bad++
    }
  }
  console.log(`${path.join(path.basename(path.dirname(dir)), path.basename(dir))}/README.md: ${targets.length} links checked`)
}
process.exit(bad === 0 ? 0 : 1)
EOF
node_file=$(readlink -f "$(dirname "$(readlink -f "$installed")")/interceptor-ebpf-linux-x64-gnu/interceptor-ebpf.linux-x64-gnu.node")
floor=$(objdump -T "$node_file" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
grep -q "glibc $floor" "$installed/README.md" || fail "the README does not state the binary's glibc floor ($floor)"
echo "glibc floor of the shipped binary: $floor (stated in the README)"

step "the interceptor-ebpf bin runs the platform package's agent binary"
(
  cd "$app"
  out=$(pnpm exec interceptor-ebpf --version)
  echo "$out"
  [[ "$out" == *"$version"* ]] || { echo "expected version $version from the bin" >&2; exit 1; }
  resolved=$(node -e '
    const shim = require.resolve("@broker-interceptor/interceptor-ebpf/package.json").replace(/package\.json$/, "bin/interceptor-ebpf.js")
    const found = require(shim).resolveBinary()
    console.log(found.path ?? found.error)')
  [[ "$resolved" == */interceptor-ebpf-linux-x64-gnu/interceptor-ebpf ]] || { echo "the bin resolved $resolved" >&2; exit 1; }
)

step "tsc (strict, nodenext) compiles the original API's callers; node runs them on the native addon"
consumer_programs "$app" native

step "type errors where the original had them"
(
  cd "$app"
  set +e
  pnpm exec tsc -p tsconfig.fail.json --pretty false >tsc-fail.log 2>&1
  status=$?
  set -e
  [[ $status -ne 0 ]] || { echo "tsc accepted fail/wrong-literals.mts" >&2; exit 1; }
  expected=$(grep -nE '// error TS[0-9]+' fail/wrong-literals.mts | sed -E 's/^([0-9]+):.*\/\/ error (TS[0-9]+).*/\1 \2/' | sort)
  actual=$(sed -nE 's/^fail\/wrong-literals\.mts\(([0-9]+),[0-9]+\): error (TS[0-9]+):.*/\1 \2/p' tsc-fail.log | sort -u)
  if [[ "$expected" != "$actual" ]]; then
    echo "expected errors (line code):" >&2; echo "$expected" >&2
    echo "tsc reported:" >&2; cat tsc-fail.log >&2
    exit 1
  fi
  echo "$(wc -l <<<"$expected") expected type errors reported, no others"
)

step "as on macOS arm64 (pnpm supportedArchitectures): only the main and wasm32-wasi packages, the same programs on WebAssembly"
wasm_app="$work/wasm-app"
setup_project "$wasm_app" $'supportedArchitectures:\n  os: [darwin]\n  cpu: [arm64]\n'
(
  cd "$wasm_app"
  pnpm add --prefer-offline "./vendor/$main_tgz" >install.log 2>&1 || { cat install.log; exit 1; }
)
wasm_store=$(dirname "$(readlink -f "$wasm_app/node_modules/@broker-interceptor/interceptor-ebpf")")
[[ -d "$wasm_store/interceptor-ebpf-wasm32-wasi" ]] || fail "pnpm did not install the wasm32-wasi package for darwin/arm64"
for suffix in "${platform_suffixes[@]}"; do
  [[ "$suffix" == wasm32-wasi || ! -e "$wasm_store/interceptor-ebpf-$suffix" ]] || fail "pnpm installed interceptor-ebpf-$suffix for darwin/arm64"
done
consumer_programs "$wasm_app" wasm32-wasi

step "as on macOS arm64 with npm (--os=darwin --cpu=arm64, no other flag): the wasm32-wasi package comes along"
npm_app="$work/npm-app"
mkdir -p "$npm_app/vendor"
cp dist/*.tgz "$npm_app/vendor/"
(
  cd "$npm_app"
  node -e '
    const [main, scope, version, ...suffixes] = process.argv.slice(1)
    const overrides = Object.fromEntries(suffixes.map((s) => [`${scope}-${s}`, `file:vendor/broker-interceptor-interceptor-ebpf-${s}-${version}.tgz`]))
    const p = { name: "npm-consumer", version: "0.0.0", private: true, dependencies: { [scope]: `file:vendor/${main}` }, overrides }
    require("fs").writeFileSync("package.json", JSON.stringify(p, null, 2))' "$main_tgz" "$scope" "$version" "${platform_suffixes[@]}"
  npm install --os=darwin --cpu=arm64 --prefer-offline --no-audit --no-fund >install.log 2>&1 || { cat install.log; exit 1; }
  [[ -d "node_modules/$wasm_pkg" ]] || { echo "npm did not install $wasm_pkg" >&2; exit 1; }
  [[ ! -e "node_modules/$platform_pkg" ]] || { echo "npm installed $platform_pkg for darwin/arm64" >&2; exit 1; }
  node -e '
    const ebpf = require("@broker-interceptor/interceptor-ebpf")
    if (ebpf.bindingTarget !== "wasm32-wasi") throw new Error(`served by ${ebpf.bindingTarget}`)
    const e = ebpf.parseDataplanePacketEvent({ code_namespace: "dataplane_verdict", reason_code: "DENY_DEFAULT", verdict: "deny", hook: "connect4" })
    console.log(`npm --os=darwin --cpu=arm64: ${ebpf.bindingTarget} build parses ${e.reason_code}`)'
)

step "with no optional dependency installed: install succeeds, require() names what is missing"
bare="$work/bare"
setup_project "$bare"
(
  cd "$bare"
  node -e '
    const p = require("./package.json")
    p.dependencies = { "@broker-interceptor/interceptor-ebpf": "file:vendor/" + process.argv[1] }
    require("fs").writeFileSync("package.json", JSON.stringify(p))' "$main_tgz"
  pnpm install --prefer-offline --no-optional >install.log 2>&1 || { cat install.log; exit 1; }
  first=$(node -e '
    try { require("@broker-interceptor/interceptor-ebpf"); console.log("loaded") }
    catch (e) { console.log(e.message.split("\n")[0]) }')
  echo "$first"
  [[ "$first" == *"the platform package $platform_pkg@$version is not installed (detected linux x64 glibc "* ]] || exit 1
  [[ "$first" == *"The WebAssembly fallback $wasm_pkg@$version"*"is not installed either"* ]] || exit 1
  [[ "$first" != *"npm has a bug"* ]] || exit 1
)

printf '\nconsumer-test: all checks passed\n'
