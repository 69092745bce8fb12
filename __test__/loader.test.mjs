// The binary loader (js/native.js): a missing or unloadable addon fails at load with one error whose first line
// names the platform package, the detected platform and libc, and what to do; napi's generic text stays in
// `cause`. Each case runs in a child process on a copy of the package without its binary.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const PLATFORM_PACKAGE = '@broker-interceptor/interceptor-ebpf-linux-x64-gnu@0.1.0'

/** A copy of the JavaScript part of the package (what the main tarball holds), without any .node file. */
function packageWithoutBinary(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interceptor-ebpf-loader-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const f of ['index.js', 'binding.js', 'package.json', 'js']) {
    fs.cpSync(path.join(root, f), path.join(dir, f), { recursive: true })
  }
  return dir
}

/** Loads the package in a child process; returns the first line of the error and its code and cause. */
function load(dir, { env = {}, preload } = {}) {
  const script = `
    ${preload ?? ''}
    try { require(${JSON.stringify(path.join(dir, 'index.js'))}); console.log(JSON.stringify({ loaded: true })) }
    catch (e) { console.log(JSON.stringify({ first: e.message.split('\\n')[0], code: e.code, cause: String(e.cause?.message) })) }`
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

const glibc = process.report.getReport().header.glibcVersionRuntime
const onGlibcX64 = process.platform === 'linux' && process.arch === 'x64' && typeof glibc === 'string'

test('platform package not installed: names it, the host, and how to install it', { skip: !onGlibcX64 && 'needs linux x64 glibc' }, (t) => {
  const r = load(packageWithoutBinary(t))
  assert.equal(r.code, 'ERR_INTERCEPTOR_EBPF_BINARY_MISSING')
  assert.ok(r.first.includes(`the platform package ${PLATFORM_PACKAGE} is not installed`), r.first)
  assert.ok(r.first.includes(`(detected linux x64 glibc ${glibc})`), r.first)
  assert.ok(r.first.includes('pnpm install'), r.first)
  // The WebAssembly fallback would have served the contract API: the error says it is missing too.
  assert.ok(r.first.includes('The WebAssembly fallback @broker-interceptor/interceptor-ebpf-wasm32-wasi@0.1.0'), r.first)
  assert.doesNotMatch(r.first, /npm has a bug/)
  assert.match(r.cause, /Cannot find native binding/)
})

test('binary present but unloadable: names the package and the dlopen reason', { skip: !onGlibcX64 && 'needs linux x64 glibc' }, (t) => {
  const dir = packageWithoutBinary(t)
  fs.writeFileSync(path.join(dir, 'interceptor-ebpf.linux-x64-gnu.node'), 'not an ELF file')
  const r = load(dir)
  assert.equal(r.code, 'ERR_INTERCEPTOR_EBPF_BINARY_UNLOADABLE')
  assert.ok(r.first.includes(`${PLATFORM_PACKAGE} is installed but its binary could not be loaded on linux x64 glibc ${glibc}`), r.first)
  assert.match(r.first, /interceptor-ebpf\.linux-x64-gnu\.node: (file too short|invalid ELF header)/)
  assert.doesNotMatch(r.first, /npm has a bug|WASI|wasm/)
})

test('unsupported platform: names the package it would need and the supported one', (t) => {
  const r = load(packageWithoutBinary(t), { preload: "Object.defineProperty(process, 'arch', { value: 'riscv64' })" })
  assert.equal(r.code, 'ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM')
  assert.match(r.first, /no native binary for linux riscv64 \S+ ?\S*: the platform package @broker-interceptor\/interceptor-ebpf-linux-riscv64-\S+ is not built/)
  assert.ok(r.first.includes('is not installed either'), r.first)
  assert.ok(
    r.first.includes(
      'Supported: @broker-interceptor/interceptor-ebpf-linux-x64-gnu, @broker-interceptor/interceptor-ebpf-linux-x64-musl, ' +
        '@broker-interceptor/interceptor-ebpf-linux-arm64-gnu, @broker-interceptor/interceptor-ebpf-linux-arm64-musl;',
    ),
    r.first,
  )
})

test('NAPI_RS_NATIVE_LIBRARY_PATH pointing nowhere is reported as such', (t) => {
  const r = load(packageWithoutBinary(t), { env: { NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/x.node' } })
  assert.equal(r.code, 'ERR_INTERCEPTOR_EBPF_BINARY_UNLOADABLE')
  assert.match(r.first, /NAPI_RS_NATIVE_LIBRARY_PATH \(\/nonexistent\/x\.node\) could not be loaded on linux .*Cannot find module/)
})

test('the package loads normally from the checkout', () => {
  assert.deepEqual(load(root), { loaded: true })
})

test('every module in js/ loads the addon through js/native.js, never binding.js directly', (t) => {
  const dir = path.join(root, 'js')
  const modules = fs.readdirSync(dir).filter((f) => f.endsWith('.js') && f !== 'native.js')
  const text = (f) => fs.readFileSync(path.join(dir, f), 'utf8')
  const direct = modules.filter((f) => /require\(\s*['"][^'"]*binding(\.js)?['"]\s*\)/.test(text(f)))
  assert.deepEqual(direct, [], 'these require binding.js and would bypass the load error of js/native.js')
  const native = modules.filter((f) => text(f).includes("require('./native.js')"))
  assert.ok(native.includes('control-client.js') && native.includes('control.js'), native.join(', '))
  if (!onGlibcX64) return
  // Each of them alone (not only after index.js loaded another one first) gives the named error.
  const copy = packageWithoutBinary(t)
  for (const f of native) {
    const script = `try { require(${JSON.stringify(path.join(copy, 'js', f))}); console.log('loaded') } catch (e) { console.log(e.code) }`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
    assert.equal(r.stdout.trim(), 'ERR_INTERCEPTOR_EBPF_BINARY_MISSING', `js/${f}`)
  }
})
