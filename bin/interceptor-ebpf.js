#!/usr/bin/env node
'use strict'
// `interceptor-ebpf` as an npm bin: runs the native agent/ctl binary of this platform with the same arguments,
// standard streams, exit code and signals. The binary is the file `interceptor-ebpf` next to the `.node` addon
// in the platform package (@broker-interceptor/interceptor-ebpf-linux-x64-gnu, ...); in a development checkout
// it falls back to what `pnpm run build` (target/<triple>/release) or `cargo build --release` (target/release)
// produced. INTERCEPTOR_EBPF_BIN overrides the lookup. See docs/agent.md.

const fs = require('node:fs')
const path = require('node:path')

const BINARY = 'interceptor-ebpf'
const ROOT = path.join(__dirname, '..')

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    // No ldd: ask the process report, as napi-rs's loader does; without one, assume glibc.
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
    return report !== null && !report.header?.glibcVersionRuntime
  }
}

/** The platform package and Rust target of this machine, or null where the package ships no binary. */
function platform() {
  if (process.platform !== 'linux') return null
  const arch = { x64: ['x64', 'x86_64'], arm64: ['arm64', 'aarch64'] }[process.arch]
  if (!arch) return null
  const abi = isMusl() ? 'musl' : 'gnu'
  return {
    packageName: `@broker-interceptor/interceptor-ebpf-linux-${arch[0]}-${abi}`,
    triple: `${arch[1]}-unknown-linux-${abi}`,
  }
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * Where the native binary is: `{ path }`, or `{ error }` naming every place that was looked at.
 * Order: INTERCEPTOR_EBPF_BIN, the platform package, then this checkout's build outputs (the newest one).
 */
function resolveBinary() {
  const override = process.env.INTERCEPTOR_EBPF_BIN
  if (override) {
    return isExecutable(override)
      ? { path: override }
      : { error: `INTERCEPTOR_EBPF_BIN=${override} is not an executable file` }
  }
  const target = platform()
  if (!target) {
    return { error: `no ${BINARY} binary is built for ${process.platform}/${process.arch} (Linux x64 and arm64 only)` }
  }
  const looked = []
  try {
    const manifest = require.resolve(`${target.packageName}/package.json`, { paths: [ROOT] })
    const candidate = path.join(path.dirname(manifest), BINARY)
    if (isExecutable(candidate)) return { path: candidate }
    looked.push(candidate)
  } catch {
    looked.push(`${target.packageName}/${BINARY} (package not installed)`)
  }
  const dev = [path.join(ROOT, 'target', target.triple, 'release', BINARY), path.join(ROOT, 'target', 'release', BINARY)]
  const built = dev.filter(isExecutable).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)
  if (built.length > 0) return { path: built[0] }
  looked.push(...dev)
  return { error: `native binary not found; expected ${looked.join(' or ')} (run \`pnpm run build\` in a checkout)` }
}

function main() {
  const found = resolveBinary()
  if (found.error) {
    process.stderr.write(`interceptor-ebpf: ${found.error}\n`)
    process.exit(127)
  }
  const { spawn } = require('node:child_process')
  const child = spawn(found.path, process.argv.slice(2), { stdio: 'inherit' })
  // A terminal's Ctrl-C reaches the whole process group; a signal sent to this pid alone is passed on.
  const forward = (signal) => () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']) process.on(signal, forward(signal))
  child.on('error', (e) => {
    process.stderr.write(`interceptor-ebpf: cannot run ${found.path}: ${e.message}\n`)
    process.exit(126)
  })
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
      return
    }
    process.exit(code ?? 1)
  })
}

if (require.main === module) main()

module.exports = { resolveBinary, platform }
