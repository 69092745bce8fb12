// The addon built with the `bench` cargo feature (src/event_batch/bench.rs): `benchEventBatch` and the two event
// transports measured against the production one. Production builds (`pnpm run build`, and the binding.d.ts
// generated from them) leave these out, so the bench builds its own copy of the addon into target/bench-addon
// (no binding.js, its declarations there too): the package's binding and its type definitions are never touched.
// It shares the cargo target directory of `pnpm run build`, so only the addon crate is compiled again with the
// feature (the dependencies are reused; the next `pnpm run build` recompiles that one crate back).
// Build it alone: `node bench/dataplane/bench-addon.mjs`.

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BENCH_ADDON_DIR = path.join(root, 'target/bench-addon')

function builtAddon() {
  if (!fs.existsSync(BENCH_ADDON_DIR)) return null
  const file = fs.readdirSync(BENCH_ADDON_DIR).find((f) => f.endsWith('.node'))
  return file ? path.join(BENCH_ADDON_DIR, file) : null
}

/** Builds the bench addon (cargo is incremental: a second build with no change is quick). */
export function buildBenchAddon() {
  execFileSync(
    path.join(root, 'node_modules/.bin/napi'),
    [
      'build', '--platform', '--release', '--features', 'bench', '--no-js',
      '--output-dir', BENCH_ADDON_DIR, '--dts', 'bench-binding.d.ts',
      '--', '--package', 'interceptor-ebpf-node',
    ],
    { cwd: root, stdio: 'inherit' },
  )
}

/**
 * The bench addon's exports; built first unless `build` is false, in which case `null` when it was never built.
 * @returns {{ benchEventBatch(format: string, count: number): Buffer | string | object[] } | null}
 */
export function loadBenchAddon({ build = true } = {}) {
  if (build) buildBenchAddon()
  const file = builtAddon()
  return file ? require(file) : null
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildBenchAddon()
  console.log(builtAddon())
}
