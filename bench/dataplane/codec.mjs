// How a batch of verdict events should cross from Rust into JavaScript (src/event_batch.rs, src/event_batch/bench.rs).
// Times, per event, one native call producing a batch plus whatever JavaScript needs to turn it into
// DataplanePacketEvent objects, for the three transports; prints a markdown table with ratios against the
// fastest. Needs no root and no kernel: the events are synthetic (same shape and string repetition as real
// ones). Run alone: `node bench/dataplane/codec.mjs`; `pnpm bench:dataplane` runs it too.

import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

import { loadBenchAddon } from './bench-addon.mjs'

const require = createRequire(import.meta.url)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const { decodeEventBatch } = require(path.join(root, 'js/interceptor.js'))
// benchEventBatch is built only with the `bench` cargo feature: its own addon, built on first use.
let native = null
const bench = () => (native ??= loadBenchAddon())

const FORMATS = ['objects', 'json', 'packed']

function keysOf(e) {
  return Object.keys(e).join(',')
}

/** All three transports must produce the same keys in the same order (values differ only in timestamps). */
export function checkFormatsAgree(n = 200) {
  const decoded = FORMATS.map((f) => decodeEventBatch(bench().benchEventBatch(f, n)))
  for (let i = 0; i < n; i++) {
    const k0 = keysOf(decoded[0][i])
    for (let f = 1; f < FORMATS.length; f++) {
      if (keysOf(decoded[f][i]) !== k0) throw new Error(`${FORMATS[f]} key order differs at ${i}: ${keysOf(decoded[f][i])} vs ${k0}`)
      for (const key of Object.keys(decoded[0][i])) {
        if (key !== 'observed_at' && decoded[f][i][key] !== decoded[0][i][key]) {
          throw new Error(`${FORMATS[f]} value of ${key} differs at ${i}`)
        }
      }
    }
  }
}

function timeFormat(format, batch, rounds) {
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let r = 0; r < rounds; r++) {
    const events = decodeEventBatch(bench().benchEventBatch(format, batch))
    // Touch every event so no transport gets away with lazy work.
    for (let i = 0; i < events.length; i++) sink += events[i].dst_port
  }
  const ns = Number(process.hrtime.bigint() - t0)
  if (sink === 0) throw new Error('no events')
  return ns / (rounds * batch)
}

export function runCodecBench({ batch = 4096, rounds = 30, repeats = 7 } = {}) {
  checkFormatsAgree()
  // Synthetic generation is inside every timing; measure it alone so the table can subtract it.
  for (const f of FORMATS) timeFormat(f, batch, 3) // warm-up
  const samples = Object.fromEntries(FORMATS.map((f) => [f, []]))
  for (let r = 0; r < repeats; r++) {
    for (const f of FORMATS) samples[f].push(timeFormat(f, batch, rounds))
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const result = Object.fromEntries(FORMATS.map((f) => [f, median(samples[f])]))
  const best = Math.min(...Object.values(result))
  const lines = [
    `Event transport, Rust -> JS, batches of ${batch} synthetic events, median of ${repeats} runs x ${rounds} batches`,
    '(includes building the synthetic events in Rust, identical for every row)',
    '',
    '| transport | ns/event | events/s | vs fastest |',
    '|---|---:|---:|---:|',
  ]
  for (const f of FORMATS) {
    lines.push(`| ${f} | ${result[f].toFixed(0)} | ${Math.round(1e9 / result[f]).toLocaleString('en-US')} | ${(result[f] / best).toFixed(2)}x |`)
  }
  return { result, table: lines.join('\n') }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(runCodecBench().table)
}
