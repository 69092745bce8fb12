'use strict'
// The npm platform-package suffix of each Rust target in package.json `napi.targets`, in napi-rs's naming
// (x86_64-unknown-linux-gnu -> linux-x64-gnu, wasm32-wasip1-threads -> wasm32-wasi), one per line, or of the
// targets given as arguments. Shared by scripts/release-pack.sh and scripts/consumer-test.sh.

function suffixOf(triple) {
  if (triple.startsWith('wasm32-')) return 'wasm32-wasi'
  const [arch, , os, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }[arch] ?? arch
  return abi === undefined ? `${os}-${cpu}` : `${os}-${cpu}-${abi}`
}

const targets = process.argv.length > 2 ? process.argv.slice(2) : require('../package.json').napi.targets
for (const target of targets) console.log(suffixOf(target))
