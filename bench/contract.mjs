// `pnpm bench`: DataplanePacketEvent parsing, this package's native addon and its WebAssembly build (the
// fallback of platforms without a native package, SPEC section 6) against zod 4 (bench/zod-baseline.mjs), on the
// same payloads in the same process. Prints ops/s (median of several rounds after a warm-up) and the ratios as a
// markdown table. Run on an idle machine; the ratios matter more than the absolute numbers.
//
// The WebAssembly build is a second copy of the package's JavaScript, loaded with NAPI_RS_FORCE_WASI=error
// next to the `.wasm` that `napi build --target wasm32-wasip1-threads` writes into target/bench-wasm (built
// here when missing or stale: cargo decides). BENCH_NO_WASM=1 leaves the column out.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import {
  bindingTarget,
  parseDataplanePacketEvent,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
  serializeDataplanePacketEventToLog,
} from '../index.js'
import { DataplanePacketEventZod } from './zod-baseline.mjs'
import { makeEvents } from './payloads.mjs'

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')

/** The package's API served by the WebAssembly build, or null with BENCH_NO_WASM=1. */
function loadWasmBuild() {
  if (process.env.BENCH_NO_WASM === '1') return null
  const out = path.join(root, 'target', 'bench-wasm')
  process.stderr.write('wasm32-wasip1-threads build (napi build; cargo skips it when up to date)...\n')
  execFileSync(
    'pnpm',
    ['exec', 'napi', 'build', '--platform', '--release', '--target', 'wasm32-wasip1-threads', '--no-js',
      '--dts', 'unused.d.ts', '--output-dir', out, '-p', 'interceptor-ebpf-node'],
    { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
  )
  const pkg = path.join(out, 'pkg')
  fs.rmSync(pkg, { recursive: true, force: true })
  fs.mkdirSync(pkg, { recursive: true })
  for (const f of ['index.js', 'binding.js', 'package.json', 'js']) fs.cpSync(path.join(root, f), path.join(pkg, f), { recursive: true })
  for (const f of ['interceptor-ebpf.wasm32-wasi.wasm', 'interceptor-ebpf.wasi.cjs', 'wasi-worker.mjs']) {
    fs.copyFileSync(path.join(out, f), path.join(pkg, f))
  }
  const before = process.env.NAPI_RS_FORCE_WASI
  process.env.NAPI_RS_FORCE_WASI = 'error'
  try {
    const api = createRequire(path.join(pkg, 'index.js'))('./index.js')
    if (api.bindingTarget !== 'wasm32-wasi') throw new Error(`the wasm copy loaded the ${api.bindingTarget} build`)
    return api
  } finally {
    if (before === undefined) delete process.env.NAPI_RS_FORCE_WASI
    else process.env.NAPI_RS_FORCE_WASI = before
  }
}

if (bindingTarget !== 'native') throw new Error(`the checkout loaded the ${bindingTarget} build: run pnpm run build`)
const wasm = loadWasmBuild()

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 400)
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000)

const events = makeEvents(256)
const texts = events.map((e) => JSON.stringify(e))
const buffers = texts.map((t) => Buffer.from(t))
const batch = makeEvents(1000, 0xbeef)
const ndjson = batch.map((e) => JSON.stringify(e)).join('\n') + '\n'
const ndjsonBuffer = Buffer.from(ndjson)

let sink = 0

// Both implementations must agree on the payloads before their speed means anything.
for (let i = 0; i < events.length; i++) {
  const a = JSON.stringify(parseDataplanePacketEvent(events[i]))
  const b = JSON.stringify(DataplanePacketEventZod.parse(events[i]))
  const c = JSON.stringify(parseDataplanePacketEventJson(texts[i]))
  if (a !== b || a !== c) throw new Error(`implementations disagree on event ${i}: ${a} / ${b} / ${c}`)
  if (wasm) {
    const d = JSON.stringify(wasm.parseDataplanePacketEvent(events[i]))
    const e = JSON.stringify(wasm.parseDataplanePacketEventJson(buffers[i]))
    if (a !== d || a !== e) throw new Error(`the wasm build disagrees on event ${i}: ${a} / ${d} / ${e}`)
  }
}
const batchResult = parseDataplanePacketEventNdjson(ndjson)
if (batchResult.records.length !== 1000 || batchResult.errors.length !== 0) throw new Error('NDJSON batch failed')
if (wasm && JSON.stringify(wasm.parseDataplanePacketEventNdjson(ndjsonBuffer)) !== JSON.stringify(batchResult)) {
  throw new Error('the wasm build disagrees on the NDJSON batch')
}

/** Runs `fn(i)` for `ms` milliseconds; returns calls per second. */
function measure(fn, ms) {
  let n = 0
  const start = process.hrtime.bigint()
  const end = start + BigInt(ms) * 1_000_000n
  let now = start
  while (now < end) {
    for (let k = 0; k < 64; k++) sink += fn(n++) === undefined ? 0 : 1
    now = process.hrtime.bigint()
  }
  return (n * 1e9) / Number(now - start)
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

const cases = [
  {
    name: 'object input (1 event)',
    ours: (i) => parseDataplanePacketEvent(events[i & 255]),
    wasm: (i) => wasm.parseDataplanePacketEvent(events[i & 255]),
    base: (i) => DataplanePacketEventZod.parse(events[i & 255]),
    baseName: 'zod parse',
  },
  {
    name: 'JSON text (1 event, string)',
    ours: (i) => parseDataplanePacketEventJson(texts[i & 255]),
    wasm: (i) => wasm.parseDataplanePacketEventJson(texts[i & 255]),
    base: (i) => DataplanePacketEventZod.parse(JSON.parse(texts[i & 255])),
    baseName: 'JSON.parse + zod',
  },
  {
    name: 'JSON bytes (1 event, Buffer)',
    ours: (i) => parseDataplanePacketEventJson(buffers[i & 255]),
    wasm: (i) => wasm.parseDataplanePacketEventJson(buffers[i & 255]),
    base: (i) => DataplanePacketEventZod.parse(JSON.parse(buffers[i & 255].toString('utf8'))),
    baseName: 'toString + JSON.parse + zod',
  },
  {
    name: 'NDJSON batch of 1,000 (string)',
    ours: () => parseDataplanePacketEventNdjson(ndjson),
    wasm: () => wasm.parseDataplanePacketEventNdjson(ndjson),
    base: () => ndjsonBaseline(ndjson),
    baseName: 'split + JSON.parse + zod per line',
    unit: 'batches/s',
  },
  {
    name: 'NDJSON batch of 1,000 (Buffer)',
    ours: () => parseDataplanePacketEventNdjson(ndjsonBuffer),
    wasm: () => wasm.parseDataplanePacketEventNdjson(ndjsonBuffer),
    base: () => ndjsonBaseline(ndjsonBuffer.toString('utf8')),
    baseName: 'toString + split + JSON.parse + zod per line',
    unit: 'batches/s',
  },
  {
    name: 'log record (1 event)',
    ours: (i) => serializeDataplanePacketEventToLog(events[i & 255]),
    wasm: (i) => wasm.serializeDataplanePacketEventToLog(events[i & 255]),
    base: (i) => toLogWithZod(events[i & 255]),
    baseName: 'zod parse + drop empty strings',
  },
]

function ndjsonBaseline(text) {
  const records = []
  const errors = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i]
    if (line.trim() === '') continue
    try {
      const r = DataplanePacketEventZod.safeParse(JSON.parse(line))
      if (r.success) records.push(r.data)
      else errors.push({ line: i + 1, issues: r.error.issues })
    } catch (error) {
      errors.push({ line: i + 1, issues: [{ code: 'invalid_json', message: String(error) }] })
    }
  }
  return { records, errors }
}

function toLogWithZod(e) {
  const out = DataplanePacketEventZod.parse(e)
  for (const k of ['message', 'comm', 'rule_id', 'dns_name', 'workload_id']) if (out[k] === '') delete out[k]
  return out
}

const fmt = (x) => Math.round(x).toLocaleString('en-US')

const rows = []
for (const c of cases) {
  const sides = wasm ? [c.ours, c.wasm, c.base] : [c.ours, c.base]
  for (const fn of sides) measure(fn, WARMUP_MS)
  const results = sides.map(() => [])
  // Interleaved rounds, so drift in machine load hits every side alike.
  for (let r = 0; r < ROUNDS; r++) sides.forEach((fn, k) => results[k].push(measure(fn, ROUND_MS)))
  const [o, w, b] = wasm ? results.map(median) : [median(results[0]), null, median(results[1])]
  rows.push(
    wasm
      ? `| ${c.name} | ${fmt(o)} | ${fmt(w)} | ${c.baseName}: ${fmt(b)} | ${(o / b).toFixed(2)}x | ${(w / o).toFixed(2)}x | ${(w / b).toFixed(2)}x |`
      : `| ${c.name} | ${fmt(o)} | ${c.baseName}: ${fmt(b)} | ${(o / b).toFixed(2)}x |`,
  )
  process.stderr.write(`${c.name}: done\n`)
}

console.log(`node ${process.version}, ${ROUNDS} rounds of ${ROUND_MS} ms after ${WARMUP_MS} ms warm-up, median ops/s`)
console.log('(NDJSON rows: whole batches of 1,000 events per second)\n')
if (wasm) {
  console.log('| case | native ops/s | wasm ops/s | zod baseline ops/s | native/zod | wasm/native | wasm/zod |')
  console.log('|---|---:|---:|---:|---:|---:|---:|')
} else {
  console.log('| case | interceptor-ebpf ops/s | baseline ops/s | ratio |')
  console.log('|---|---:|---:|---:|')
}
for (const r of rows) console.log(r)
if (sink === 42) console.log('')
