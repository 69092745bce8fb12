// `pnpm bench:control`: builds the agent and the control benchmark (bench/control/control_bench.rs, a cargo
// example of crates/agent) in one cargo invocation and runs it as root. It prints a table of the agent against
// a trivial NDJSON server measured in the same run. Extra arguments go to the benchmark (`--repeat N`).
import { execFileSync, spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
  console.error('bench:control needs root: it runs the agent, which loads the eBPF dataplane (sudo pnpm bench:control)')
  process.exit(1)
}

execFileSync(
  'cargo',
  ['build', '--release', '--package', 'interceptor-ebpf-agent', '--bin', 'interceptor-ebpf', '--example', 'control_bench'],
  { cwd: root, stdio: 'inherit' },
)
const target = path.join(root, 'target', 'release')
const r = spawnSync(
  path.join(target, 'examples', 'control_bench'),
  [path.join(target, 'interceptor-ebpf'), ...process.argv.slice(2)],
  { cwd: root, stdio: 'inherit' },
)
process.exit(r.status ?? 1)
