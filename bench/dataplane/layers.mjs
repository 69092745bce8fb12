// `pnpm bench:layers` (root only): what the bypass layers (docs/threat-model.md) cost an allowed workload.
// Every configuration runs in the same netns with its own Interceptor on its own cgroup (bench/dataplane/
// isolation.mjs creates and removes them), and the configurations are interleaved round by round, so slow drift
// (other load on the machine) spreads over all of them; each table prints medians and the ratio against the
// baseline measured in the same run.
//
//   1. allowed-flow throughput: a TCP stream (bytes/s) and a UDP flood (datagrams/s, connected send() and
//      unconnected sendto()) to an allowed destination, through the egress layer's fast path
//   2. socket() rate: the sock_create layer's cost on socket creation
//   3. average run time per program (kernel.bpf_stats_enabled, restored afterwards)
//   4. how many packets the egress layer had to judge during the UDP flood (the socket marks' effect)
//
// Environment: BENCH_ROUNDS (default 11), BENCH_SECONDS per measurement (default 0.5).

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, isRoot, run, runIn } from './isolation.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const { Interceptor } = require(path.join(here, '../../index.js'))

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.5)
const TARGET_IP = '127.0.0.1'
const PORTS = { 'tcp-stream': 7100, 'udp-flood': 7101, 'udp-sendto': 7102, sockets: 7103 }
const CPU = 1

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const pct = (r) => `${r >= 1 ? '+' : ''}${((r - 1) * 100).toFixed(1)}%`
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' / ')

/** The allowed destination and nothing else (broker and DNS elsewhere): every flow here is an allowed one. */
const SNAPSHOT = {
  broker: [{ ip: '10.255.255.1', port: 8081 }],
  dns: [{ ip: '10.255.255.53' }],
  rules: [{ id: 'bench-target', action: 'allow', cidr: `${TARGET_IP}/32` }],
  sampling: { allowOneIn: 0, unmanagedOneIn: 0 },
}

/** The configurations, in table order; `base` is what the ratios are taken against. */
const CONFIGS = [
  { name: 'no programs', disable: null },
  {
    name: 'connect/sendmsg hooks only (no bypass layer)',
    disable: ['sock_create', 'socket_create_lsm', 'egress', 'socket_storage'],
    base: true,
  },
  { name: 'all layers (sock_create, egress, socket marks)', disable: [], full: true },
  { name: 'egress without socket marks', disable: ['socket_storage'] },
]

function buildGenerator(dir) {
  const out = path.join(dir, 'throughput')
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out, path.join(here, 'throughput.c')], {
    stdio: 'inherit',
  })
  return out
}

async function generate(gen, c, netns, mode) {
  const r = await runIn(c.cgroup, netns, [gen, mode, TARGET_IP, PORTS[mode], Math.round(SECONDS * 1000), CPU])
  if (r.code !== 0) throw new Error(`${c.name} ${mode} failed (${r.code}): ${r.stderr.trim()}`)
  const out = JSON.parse(r.stdout)
  if (out.errors !== 0) throw new Error(`${c.name} ${mode}: the allowed flow was refused: ${r.stdout.trim()}`)
  return out
}

async function interleaved(gen, configs, netns, modes) {
  const samples = new Map()
  for (const mode of modes) for (const c of configs) samples.set(`${mode}|${c.name}`, [])
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      // Rotate the order every round so drift spreads evenly.
      const order = configs.map((_, i) => configs[(i + round) % configs.length])
      for (const c of order) samples.get(`${mode}|${c.name}`).push(await generate(gen, c, netns, mode))
    }
  }
  return samples
}

/**
 * Two views of the same runs: the wall-clock rate (what a workload gets, but on a shared machine it moves with
 * everything else that runs) and the sending thread's CPU time per call (the cost itself, including every
 * program the kernel runs in that thread: much steadier under outside load). Ratios are against the
 * connect/sendmsg hooks alone, i.e. what the bypass layers add.
 */
function table(samples, configs, mode, title, unit, scale = 1) {
  const rate = (c) => samples.get(`${mode}|${c.name}`).map((r) => r.per_sec / scale)
  const cpu = (c) => samples.get(`${mode}|${c.name}`).map((r) => r.cpu_ns_per_op)
  const baseCfg = configs.find((c) => c.base)
  const base = median(rate(baseCfg))
  const baseCpu = median(cpu(baseCfg))
  const lines = [
    title,
    '',
    `| configuration | ${unit} (median) | min | max | rate vs hooks only | CPU ns per call (median) | throughput from CPU time vs hooks only |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for (const c of configs) {
    const xs = rate(c)
    const m = median(xs)
    const cm = median(cpu(c))
    lines.push(
      `| ${c.name} | ${fmt(m)} | ${fmt(Math.min(...xs))} | ${fmt(Math.max(...xs))} | ${(m / base).toFixed(3)} (${pct(m / base)}) | ${cm.toFixed(0)} | ${(baseCpu / cm).toFixed(3)} (${pct(baseCpu / cm)}) |`,
    )
  }
  const full = configs.find((c) => c.full)
  return { text: lines.join('\n'), ratio: median(rate(full)) / base, cpuRatio: baseCpu / median(cpu(full)) }
}

function progsOf(cgroup) {
  return JSON.parse(run('bpftool', ['cgroup', 'show', cgroup, '--json'])).map((p) => ({ id: p.id, attach: p.attach_type, name: p.name }))
}

function statsOf(id) {
  const p = JSON.parse(run('bpftool', ['prog', 'show', 'id', String(id), '--json']))
  return { run_cnt: p.run_cnt ?? 0, run_time_ns: p.run_time_ns ?? 0 }
}

async function bpfStatsTable(gen, configs, netns) {
  const old = fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim()
  const lines = [
    "Average run time per program while the flows above run (kernel.bpf_stats_enabled; run_time_ns / run_cnt of this benchmark's own runs)",
    '',
    '| configuration | workload | program | attach | runs | avg ns/run |',
    '|---|---|---|---|---:|---:|',
  ]
  try {
    fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1')
    for (const c of configs.filter((c) => c.attachDir)) {
      for (const mode of ['udp-flood', 'udp-sendto', 'tcp-stream', 'sockets']) {
        const progs = progsOf(c.attachDir)
        const before = new Map(progs.map((p) => [p.id, statsOf(p.id)]))
        await generate(gen, c, netns, mode)
        for (const p of progs) {
          const a = before.get(p.id)
          const b = statsOf(p.id)
          const runs = b.run_cnt - a.run_cnt
          if (runs === 0) continue
          lines.push(`| ${c.name} | ${mode} | ${p.name} | ${p.attach} | ${fmt(runs)} | ${((b.run_time_ns - a.run_time_ns) / runs).toFixed(1)} |`)
        }
      }
    }
  } finally {
    fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', old)
  }
  lines.push('', `kernel.bpf_stats_enabled restored to ${old}`)
  return lines.join('\n')
}

async function judgedTable(gen, configs, netns) {
  const lines = [
    'Packets the egress layer judged against the policy during one UDP flood (status().layerCounters): a packet of a flow a connect/sendmsg verdict marked needs no lookup',
    '',
    '| configuration | datagrams sent | packets judged | marks written |',
    '|---|---:|---:|---:|',
  ]
  for (const c of configs.filter((c) => c.interceptor && !c.base)) {
    for (const mode of ['udp-flood', 'udp-sendto']) {
      const before = c.interceptor.status().layerCounters
      const r = await generate(gen, c, netns, mode)
      const after = c.interceptor.status().layerCounters
      lines.push(`| ${c.name}, ${mode} | ${fmt(r.ops)} | ${fmt(after.packetsJudged - before.packetsJudged)} | ${fmt(after.marksWritten - before.marksWritten)} |`)
    }
  }
  return lines.join('\n')
}

async function main() {
  console.log(`# Bypass layer benchmarks\n\n${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), kernel ${os.release()}, node ${process.version}; load average (1/5/15 min) at start: ${load()}\n`)
  if (!isRoot()) {
    console.log('The kernel benchmarks need root (BPF, cgroups, network namespaces): run `sudo pnpm bench:layers`.')
    process.exitCode = 1
    return
  }
  for (const cmd of ['gcc', 'bpftool', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    } catch {
      throw new Error(`${cmd} is required (apt-get install gcc bpftool iproute2)`)
    }
  }
  const iso = new Isolation('ebpf-layers')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-layers-'))
  iso.defer(() => fs.rmSync(tmp, { recursive: true, force: true }))
  const configs = CONFIGS.map((c) => ({ ...c }))
  try {
    const gen = buildGenerator(tmp)
    const netns = iso.netns('ns', { 'net.core.rmem_max': 16 << 20 })
    for (const [i, c] of configs.entries()) {
      if (c.disable === null) {
        c.cgroup = iso.cgroup('plain/work')
        continue
      }
      c.attachDir = iso.cgroup(`c${i}`)
      c.cgroup = iso.cgroup(`c${i}/work`)
      c.interceptor = await Interceptor.load({ cgroupRoot: c.attachDir, pinDir: iso.pinDir(`c${i}`), disableLayers: c.disable })
      iso.defer(() => c.interceptor.close({ detach: true }))
      await c.interceptor.replacePolicySnapshot(SNAPSHOT)
      c.interceptor.upsertManagedCgroup({ path: c.cgroup, workloadId: `bench-${i}` })
      const s = c.interceptor.status()
      c.layers = s.layers.map((l) => `${l.layer}: ${l.state}`).join(', ')
      console.error(`${c.name}: ${c.layers}`)
    }
    console.log('Layers of each configuration:\n')
    for (const c of configs.filter((c) => c.layers)) console.log(`- ${c.name}: ${c.layers}`)
    console.log('')

    const samples = await interleaved(gen, configs, netns, ['tcp-stream', 'udp-flood', 'udp-sendto', 'sockets'])
    const what = `loopback in the bench netns, median of ${ROUNDS} interleaved ${SECONDS} s runs, sender pinned to CPU ${CPU}, receiver to the other`
    const results = [
      table(samples, configs, 'tcp-stream', `Allowed TCP stream (64 KiB send() calls, one connection), ${what}`, 'MB/s', 1e6),
      table(samples, configs, 'udp-flood', `Allowed UDP flood, connected send() of 64-byte datagrams (no sendmsg hook: every packet meets only the egress layer), ${what}`, 'datagrams/s'),
      table(samples, configs, 'udp-sendto', `Allowed UDP flood, unconnected sendto() of 64-byte datagrams (sendmsg4 judges and marks, then egress), ${what}`, 'datagrams/s'),
      table(samples, configs, 'sockets', `socket(AF_INET, SOCK_STREAM) + close() rate in the managed cgroup (the sock_create hook), ${what}`, 'sockets/s'),
    ]
    for (const r of results) console.log(r.text, '\n')
    const names = ['TCP stream', 'UDP flood (send)', 'UDP flood (sendto)', 'socket()']
    console.log(
      `All layers vs connect/sendmsg hooks only (target >= 0.95 for the allowed flows), from CPU time per call: ${results.map((r, i) => `${names[i]} ${r.cpuRatio.toFixed(3)}`).join(', ')}; from the wall-clock rate: ${results.map((r, i) => `${names[i]} ${r.ratio.toFixed(3)}`).join(', ')}\n`,
    )
    console.log(await judgedTable(gen, configs, netns), '\n')
    console.log(await bpfStatsTable(gen, configs, netns), '\n')
    console.log(`Load average (1/5/15 min) at the end: ${load()}`)
  } finally {
    for (const e of await iso.cleanup()) console.error(`cleanup: ${e.message}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
