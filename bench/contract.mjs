// `pnpm bench`: DataplanePacketEvent parsing, this package against zod 4 (bench/zod-baseline.mjs) on the same
// payloads in the same process. Prints ops/s (median of several rounds after a warm-up) and the ratio as a
// markdown table. Run on an idle machine; the ratio matters more than the absolute numbers.
import {
  parseDataplanePacketEvent,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
  serializeDataplanePacketEventToLog,
} from '../index.js'
import { DataplanePacketEventZod } from './zod-baseline.mjs'
import { makeEvents } from './payloads.mjs'

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
}
const batchResult = parseDataplanePacketEventNdjson(ndjson)
if (batchResult.records.length !== 1000 || batchResult.errors.length !== 0) throw new Error('NDJSON batch failed')

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
    base: (i) => DataplanePacketEventZod.parse(events[i & 255]),
    baseName: 'zod parse',
  },
  {
    name: 'JSON text (1 event, string)',
    ours: (i) => parseDataplanePacketEventJson(texts[i & 255]),
    base: (i) => DataplanePacketEventZod.parse(JSON.parse(texts[i & 255])),
    baseName: 'JSON.parse + zod',
  },
  {
    name: 'JSON bytes (1 event, Buffer)',
    ours: (i) => parseDataplanePacketEventJson(buffers[i & 255]),
    base: (i) => DataplanePacketEventZod.parse(JSON.parse(buffers[i & 255].toString('utf8'))),
    baseName: 'toString + JSON.parse + zod',
  },
  {
    name: 'NDJSON batch of 1,000 (string)',
    ours: () => parseDataplanePacketEventNdjson(ndjson),
    base: () => ndjsonBaseline(ndjson),
    baseName: 'split + JSON.parse + zod per line',
    unit: 'batches/s',
  },
  {
    name: 'NDJSON batch of 1,000 (Buffer)',
    ours: () => parseDataplanePacketEventNdjson(ndjsonBuffer),
    base: () => ndjsonBaseline(ndjsonBuffer.toString('utf8')),
    baseName: 'toString + split + JSON.parse + zod per line',
    unit: 'batches/s',
  },
  {
    name: 'log record (1 event)',
    ours: (i) => serializeDataplanePacketEventToLog(events[i & 255]),
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
  for (const k of ['message', 'comm', 'rule_id', 'workload_id']) if (out[k] === '') delete out[k]
  return out
}

const fmt = (x) => Math.round(x).toLocaleString('en-US')

const rows = []
for (const c of cases) {
  measure(c.ours, WARMUP_MS)
  measure(c.base, WARMUP_MS)
  const ours = []
  const base = []
  // Interleaved rounds, so drift in machine load hits both sides alike.
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(measure(c.ours, ROUND_MS))
    base.push(measure(c.base, ROUND_MS))
  }
  const o = median(ours)
  const b = median(base)
  rows.push(`| ${c.name} | ${fmt(o)} | ${c.baseName}: ${fmt(b)} | ${(o / b).toFixed(2)}x |`)
  process.stderr.write(`${c.name}: done\n`)
}

console.log(`node ${process.version}, ${ROUNDS} rounds of ${ROUND_MS} ms after ${WARMUP_MS} ms warm-up, median ops/s`)
console.log('(NDJSON rows: whole batches of 1,000 events per second)\n')
console.log('| case | interceptor-ebpf ops/s | baseline ops/s | ratio |')
console.log('|---|---:|---:|---:|')
for (const r of rows) console.log(r)
if (sink === 42) console.log('')
