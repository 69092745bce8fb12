#!/usr/bin/env bash
# The package as a user gets it: `pnpm release:pack`, then a fresh project installs the tarballs the way the
# README's "Installing from tarballs" says, and checks, with TypeScript `strict` and `moduleResolution:
# nodenext`:
#   - the shipped files (LICENSE, README whose links resolve, no tests/target/bench), the glibc floor in the README;
#   - ESM `import`, `import x = require()` in a .cts file and plain `require()` of the original package's API,
#     compiled and run (__test__/consumer/);
#   - type errors where the original had them (__test__/consumer/fail/ must fail, with exactly the marked errors);
#   - without the platform package, `pnpm install` succeeds and the first `require()` names what is missing.
# Needs only the npm registry (through the pnpm store), no other network.
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
main_tgz="broker-interceptor-interceptor-ebpf-$version.tgz"
platform_pkg="@broker-interceptor/interceptor-ebpf-linux-x64-gnu"
platform_tgz="broker-interceptor-interceptor-ebpf-linux-x64-gnu-$version.tgz"
ts_version=$(node -p "require('typescript/package.json').version")
types_node_version=$(node -p "require('@types/node/package.json').version")

work=$(mktemp -d "${TMPDIR:-/tmp}/interceptor-ebpf-consumer.XXXXXX")
trap 'status=$?; rm -rf "$work"; [[ $status -eq 0 ]] || printf "consumer-test: FAILED in step: %s\n" "$current" >&2' EXIT

step "shipped files"
for forbidden in '^package/(target|bench|__test__|fuzz|crates|src|examples|docker|scripts|node_modules|dist)/' '\.tgz$' '\.test\.' '\.test-d\.ts$'; do
  for tgz in "$main_tgz" "$platform_tgz"; do
    if tar -tzf "dist/$tgz" | grep -E "$forbidden"; then fail "$tgz ships files matching $forbidden (listed above)"; fi
  done
done
# (Listings are read whole: `grep -q` closing a pipe early would fail the pipeline under pipefail.)
main_list=$(tar -tzf "dist/$main_tgz")
platform_list=$(tar -tzf "dist/$platform_tgz")
for required in LICENSE README.md CHANGELOG.md package.json index.js index.d.ts binding.js js/native.js bin/interceptor-ebpf.js; do
  grep -qx "package/$required" <<<"$main_list" || fail "$main_tgz lacks $required"
done
for required in LICENSE README.md package.json interceptor-ebpf.linux-x64-gnu.node interceptor-ebpf; do
  grep -qx "package/$required" <<<"$platform_list" || fail "$platform_tgz lacks $required"
done
license=$(tar -xzOf "dist/$main_tgz" package/LICENSE)
grep -q 'Apache License' <<<"$license" || fail "LICENSE is not the Apache-2.0 text"

# A fresh project, set up as the README tells a user to: tarballs in vendor/, the platform package overridden
# to its tarball (the main package's optional dependency would otherwise be looked up in the registry).
setup_project() {
  local dir=$1
  mkdir -p "$dir/vendor"
  cp "dist/$main_tgz" "dist/$platform_tgz" "$dir/vendor/"
  printf '{ "name": "consumer-app", "version": "0.0.0", "private": true }\n' >"$dir/package.json"
  printf "overrides:\n  '%s': file:vendor/%s\n" "$platform_pkg" "$platform_tgz" >"$dir/pnpm-workspace.yaml"
}

step "install into a fresh project with pnpm add"
app="$work/app"
setup_project "$app"
cp -r "$fixture/tsconfig.json" "$fixture/tsconfig.fail.json" "$fixture/src" "$fixture/fail" "$fixture/plain.cjs" "$app/"
(
  cd "$app"
  pnpm add --prefer-offline "./vendor/$main_tgz" >install.log 2>&1 || { cat install.log; exit 1; }
  pnpm add --prefer-offline -D "typescript@$ts_version" "@types/node@$types_node_version" >>install.log 2>&1 || { cat install.log; exit 1; }
  # On the supported platform nothing may be reported unsupported or skipped.
  if grep -iE 'unsupported|skipp|optional dependenc' install.log; then echo "pnpm warned while installing (above)" >&2; exit 1; fi
)
installed="$app/node_modules/@broker-interceptor/interceptor-ebpf"
[[ -d "$app/node_modules/.pnpm/node_modules/$platform_pkg" || -d "$(dirname "$(readlink -f "$installed")")/interceptor-ebpf-linux-x64-gnu" ]] ||
  fail "the platform package was not installed next to the main package"

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

step "tsc (strict, nodenext) compiles the original API's callers; node runs them"
(
  cd "$app"
  pnpm exec tsc -p tsconfig.json
  node out/esm.mjs
  node out/cjs.cjs
  node plain.cjs
)

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

step "without the platform package: install succeeds, require() says what is missing"
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
  [[ "$first" != *"npm has a bug"* && "$first" != *WASI* ]] || exit 1
)

printf '\nconsumer-test: all checks passed\n'
