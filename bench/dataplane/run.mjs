// `pnpm bench:dataplane` (root only): the dataplane benchmarks of issue 3, each printed as a markdown table
// of ratios measured in the same run. Everything runs in network namespaces and cgroups this script creates
// (bench/dataplane/isolation.mjs) and removes at the end, even on failure; iptables only runs inside them.
//
//   1. event transport Rust -> JS (synthetic, no kernel): objects vs JSON vs packed
//   2. call rates in the same netns, IPv4: TCP connect() (+ accept + close), UDP connect(), UDP sendto();
//      IPv6: UDP connect(), UDP sendto(). Configurations: no programs / allow-all programs (the kernel's hook
//      floor) / dataplane + 10 rules / dataplane + 100,000 rules / (IPv4) iptables OUTPUT 10, 1,000, 100,000 rules.
//      The dataplane's programs are attached at the top of the cgroup2 mount (docs/dataplane.md, "Attach point"),
//      so they run for every process of the host: two more rows measure what they cost a caller that is not
//      managed, one inside the cgroup root and one outside it (the rest of the host), against the same caller
//      with no programs. Each dataplane is loaded only for its own rows (in every round, rotated with the
//      others), so no other row pays for it.
//   3. average run time of each of the four programs (connect4, connect6, sendmsg4, sendmsg6) from
//      kernel.bpf_stats_enabled (restored afterwards), with the allow-all programs as the floor
//   4. events per second from the kernel into a JavaScript `for await` consumer, with the drop counters
//   5. time to replace a 10,000 and a 100,000 rule snapshot, back to back
//
// Environment: BENCH_ROUNDS (default 5), BENCH_SECONDS per measurement (default 1), BENCH_EVENT_SECONDS (3),
// BENCH_ONLY=replace (only table 5), BENCH_ONLY=hooks (only tables 2 and 3 without iptables, for quick runs) or
// BENCH_ONLY=runtime (only table 3, the programs' run times: the quickest loop when changing bpf/),
// BENCH_DISABLE_LAYERS=sock_create,egress (a comma list passed as `disableLayers`: the default is every bypass layer
// the kernel supports, as in production; disabling them measures the connect/sendmsg hooks alone).

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, cgroup2Mount, isRoot, run, runIn } from './isolation.mjs'
import { runCodecBench } from './codec.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const { Interceptor } = require(path.join(here, '../../index.js'))

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1)
const EVENT_SECONDS = Number(process.env.BENCH_EVENT_SECONDS ?? 3)
// `BENCH_ONLY=replace` measures only the snapshot replacement table (no load generator, no iptables).
const ONLY = process.env.BENCH_ONLY ?? ''
const DISABLE_LAYERS = (process.env.BENCH_DISABLE_LAYERS ?? '').split(',').filter(Boolean)
const TARGET_IP = '127.0.0.1'
const TARGET_IP6 = '::1'
const TCP_PORT = 7000
const UDP_PORT = 7001
// No rule covers 127.0.0.2: every connect to it is DENY_DEFAULT, and deny events are never sampled.
const DENIED_IP = '127.0.0.2'

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const fmt = (n) => Math.round(n).toLocaleString('en-US')
const DP10 = 'eBPF, 10 rules'
const DP100K = 'eBPF, 100,000 rules'
const DP_UNMANAGED = 'eBPF (10 rules) attached, caller unmanaged inside the cgroup root'
const DP_OUTSIDE = 'eBPF (10 rules) attached, caller outside the cgroup root (= no programs row\'s cgroup)'
const pct = (r) => `${r >= 1 ? '+' : ''}${((r - 1) * 100).toFixed(1)}%`

function ensureTools() {
  const has = (cmd) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  }
  if (!has('iptables-restore')) {
    console.error('iptables-restore missing: installing the Debian package iptables')
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'iptables'], { stdio: 'inherit' })
  }
  for (const cmd of ['gcc', 'bpftool', 'ip']) {
    if (!has(cmd)) throw new Error(`${cmd} is required (apt-get install gcc bpftool iproute2)`)
  }
}

function buildGenerator(dir) {
  const out = path.join(dir, 'connect_rate')
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out, path.join(here, 'connect_rate.c')], {
    stdio: 'inherit',
  })
  return out
}

const HOOKS = ['connect4', 'connect6', 'sendmsg4', 'sendmsg6']

/**
 * A cgroup with trivial allow-all programs on the four hooks (bench/dataplane/allow_all.bpf.c): the fixed cost
 * of the kernel running any sock_addr program, so the eBPF rows can be read as floor + dataplane logic.
 */
function attachAllowAll(iso, dir) {
  const obj = path.join(dir, 'allow_all.o')
  // asm/types.h lives in the multiarch include directory (x86_64-linux-gnu, aarch64-linux-gnu).
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim()
  const args = ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', path.join(here, 'allow_all.bpf.c')]
  execFileSync('clang-19', [...args, '-o', obj], {
    stdio: 'inherit',
  })
  const pin = iso.pinDir('allow-all')
  const cg = iso.cgroup('allowall')
  fs.mkdirSync(pin)
  run('bpftool', ['prog', 'loadall', obj, pin])
  for (const hook of HOOKS) {
    const prog = path.join(pin, `allow_${hook}`)
    run('bpftool', ['cgroup', 'attach', cg, hook, 'pinned', prog])
    iso.defer(() => run('bpftool', ['cgroup', 'detach', cg, hook, 'pinned', prog]))
  }
  return cg
}

/** Rule i of a generated policy: a /32 in 10.0.0.0/8, TCP 443, alternating allow and deny. */
function ruleAddress(i) {
  const n = i + 1
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
}

/**
 * A snapshot with `count` rules: count-1 generated rules plus one that allows the benchmark target
 * (127.0.0.1/32, every port, both protocols; 127.0.0.2 stays default-denied). `allowOneIn: 0` emits no allow events, so the connect-rate rows
 * measure the verdict path, not a user-space consumer competing for the CPU.
 */
export function benchSnapshot(count, { allowOneIn = 0 } = {}) {
  const rules = []
  for (let i = 0; i < count - 1; i++) {
    rules.push({ id: `bench-${i}`, action: i % 2 ? 'deny' : 'allow', cidr: `${ruleAddress(i)}/32`, ports: [443], protocol: 'tcp' })
  }
  rules.push({ id: 'bench-target', action: 'allow', cidr: `${TARGET_IP}/32` })
  rules.push({ id: 'bench-target6', action: 'allow', cidr: `${TARGET_IP6}/128` })
  return {
    broker: [{ ip: '10.255.255.1', port: 8081 }],
    dns: [{ ip: '10.255.255.53' }],
    rules,
    sampling: { allowOneIn, unmanagedOneIn: 0 },
  }
}

/** The same destinations as OUTPUT rules, loaded with one iptables-restore inside `netns`. */
function loadIptables(netns, count) {
  const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]']
  for (let i = 0; i < count - 1; i++) {
    lines.push(`-A OUTPUT -d ${ruleAddress(i)}/32 -p tcp --dport 443 -j ${i % 2 ? 'DROP' : 'ACCEPT'}`)
  }
  lines.push(`-A OUTPUT -d ${TARGET_IP}/32 -j ACCEPT`, 'COMMIT', '')
  const t0 = process.hrtime.bigint()
  execFileSync('ip', ['netns', 'exec', netns, 'iptables-restore'], { input: lines.join('\n') })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const listed = run('ip', ['netns', 'exec', netns, 'iptables', '-S', 'OUTPUT']).split('\n').filter((l) => l.startsWith('-A')).length
  if (listed !== count) throw new Error(`iptables in ${netns}: expected ${count} OUTPUT rules, found ${listed}`)
  return ms
}

async function generate(gen, cgroup, netns, mode, ip, seconds) {
  const port = mode === 'tcp' ? TCP_PORT : UDP_PORT
  const r = await runIn(cgroup, netns, [gen, mode, ip, port, Math.round(seconds * 1000), 1])
  if (r.code !== 0) throw new Error(`connect_rate ${mode} ${ip} failed (${r.code}): ${r.stderr.trim()}`)
  return JSON.parse(r.stdout)
}

/** The call-rate workloads: `iptables` marks those the iptables namespaces can filter (IPv4 OUTPUT rules). */
const WORKLOADS = [
  { mode: 'tcp', ip: TARGET_IP, iptables: true, title: 'TCP connect() rate, IPv4 (connect to a listener, accept, close; RST close)' },
  { mode: 'udp', ip: TARGET_IP, iptables: true, title: 'UDP connect() rate, IPv4 (connect() on one UDP socket, no packet sent; hook connect4)' },
  { mode: 'udpsend', ip: TARGET_IP, iptables: true, title: 'UDP sendto() rate, IPv4 (1 byte on one unconnected socket to a bound, never-read receiver; hook sendmsg4)' },
  { mode: 'udp', ip: TARGET_IP6, iptables: false, title: 'UDP connect() rate, IPv6 (hook connect6)' },
  { mode: 'udpsend', ip: TARGET_IP6, iptables: false, title: 'UDP sendto() rate, IPv6 (hook sendmsg6)' },
]

/**
 * Every configuration group in every round (rotated, so slow drift spreads evenly): `enter()` before its rows,
 * `leave()` after them, so a dataplane (attached at the cgroup2 mount's top: every process on the host runs its
 * programs) is attached only while its own rows are measured.
 */
async function connectRateTables(gen, groups) {
  const rows = groups.flatMap((g) => g.rows)
  const samples = new Map(WORKLOADS.map((w) => [w, new Map(rows.map((c) => [c.name, []]))]))
  for (let round = 0; round < ROUNDS; round++) {
    const order = groups.map((_, i) => groups[(i + round) % groups.length])
    for (const g of order) {
      await g.enter?.()
      try {
        for (const w of WORKLOADS) {
          for (const c of g.rows) {
            if (c.iptables && !w.iptables) continue
            const r = await generate(gen, c.cgroup, c.netns, w.mode, w.ip, SECONDS)
            if (r.ok === 0 || r.eperm !== 0 || r.other_errors !== 0) {
              throw new Error(`${c.name} ${w.mode} ${w.ip}: the allowed target was refused: ${JSON.stringify(r)}`)
            }
            samples.get(w).get(c.name).push(r.per_sec)
          }
        }
      } finally {
        await g.leave?.()
      }
    }
  }
  const tables = []
  for (const w of WORKLOADS) {
    const wRows = rows.filter((c) => w.iptables || !c.iptables)
    const s = samples.get(w)
    const base = median(s.get(wRows[0].name))
    const lines = [
      `${w.title}, loopback in the bench netns, median of ${ROUNDS} interleaved ${SECONDS} s runs, generator pinned to CPU 1`,
      '',
      '| configuration | calls/s (median) | min | max | vs no programs |',
      '|---|---:|---:|---:|---:|',
    ]
    for (const c of wRows) {
      const xs = s.get(c.name)
      const m = median(xs)
      lines.push(`| ${c.name} | ${fmt(m)} | ${fmt(Math.min(...xs))} | ${fmt(Math.max(...xs))} | ${(m / base).toFixed(3)} (${pct(m / base)}) |`)
    }
    const byName = (n) => (s.has(n) ? median(s.get(n)) : undefined)
    const r10 = byName(DP10)
    const r100k = byName(DP100K)
    if (r10 !== undefined && r100k !== undefined) {
      lines.push('', `eBPF 10 rules vs no programs: ${(r10 / base).toFixed(3)}; eBPF 100,000 rules vs no programs: ${(r100k / base).toFixed(3)} (target >= 0.95); 100,000 vs 10 rules: ${(r100k / r10).toFixed(3)}`)
    }
    const outside = byName(DP_OUTSIDE)
    const inside = byName(DP_UNMANAGED)
    if (outside !== undefined && inside !== undefined) {
      lines.push('', `What the programs attached at the cgroup2 mount's top cost a process they do not manage: outside the cgroup root ${(outside / base).toFixed(3)} (${pct(outside / base)}), unmanaged inside it ${(inside / base).toFixed(3)} (${pct(inside / base)}), both vs the same caller with no programs.`)
    }
    if (w.mode === 'udp' && w.iptables) {
      lines.push('', 'A UDP connect() sends no packet, so netfilter never sees it: the iptables rows only show run-to-run noise; the eBPF hook judges the connect() itself.')
    }
    tables.push(lines.join('\n'))
  }
  return tables.join('\n\n')
}

/** The programs attached to `cgroup` (bpftool), optionally only those whose ids are in `only`. */
function progIdsOf(cgroup, only) {
  const out = JSON.parse(run('bpftool', ['cgroup', 'show', cgroup, '--json']))
  return out.map((p) => ({ id: p.id, attach: p.attach_type, name: p.name })).filter((p) => !only || only.has(p.id))
}

/** The ids of the programs a dataplane pinned under `pinDir` (`prog_<hook>`): its own, among other dataplanes'
 * programs on the same cgroup (a test suite running beside the bench attaches its own at the same place). */
function pinnedProgIds(pinDir) {
  const ids = new Set()
  for (const f of fs.readdirSync(pinDir).filter((n) => n.startsWith('prog_'))) {
    ids.add(JSON.parse(run('bpftool', ['prog', 'show', 'pinned', path.join(pinDir, f), '--json'])).id)
  }
  return ids
}

/** The program a workload runs: its hook. */
const HOOK_WORKLOADS = [
  { hook: 'connect4', attach: 'cgroup_inet4_connect', mode: 'udp', ip: TARGET_IP },
  { hook: 'connect6', attach: 'cgroup_inet6_connect', mode: 'udp', ip: TARGET_IP6 },
  { hook: 'sendmsg4', attach: 'cgroup_udp4_sendmsg', mode: 'udpsend', ip: TARGET_IP },
  { hook: 'sendmsg6', attach: 'cgroup_udp6_sendmsg', mode: 'udpsend', ip: TARGET_IP6 },
  // The egress layer's program runs once per packet (the allow-all floor has none).
  { hook: 'egress', attach: 'cgroup_inet_egress', mode: 'udpsend', ip: TARGET_IP, optional: true },
]

async function bpfStatsTable(gen, groups) {
  const old = fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim()
  const rounds = Math.max(3, Math.min(ROUNDS, 5))
  const lines = [
    `Average run time per program (kernel.bpf_stats_enabled: run_time_ns / run_cnt of the program over one ${SECONDS} s run of the workload that fires its hook; median of ${rounds} rounds; the stats themselves add two clock reads per run, also to the allow-all floor)`,
    '',
    '| configuration | hook | program | workload | runs (median) | avg ns/run (median) | min | max |',
    '|---|---|---|---|---:|---:|---:|---:|',
  ]
  try {
    fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1')
    for (const g of groups) {
      await g.enter?.()
      try {
        for (const c of g.rows.filter((r) => r.attachDir)) lines.push(...(await bpfStatsRows(gen, c, rounds)))
      } finally {
        await g.leave?.()
      }
    }
  } finally {
    fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', old)
  }
  lines.push('', `kernel.bpf_stats_enabled restored to ${old}`)
  return lines.join('\n')
}

/** One configuration's rows of the run-time table. A dataplane's programs run for every process of the host, so
 * their counts include whatever else the host sent in that second: next to the generator's calls, noise. */
async function bpfStatsRows(gen, c, rounds) {
  const lines = []
  const progs = progIdsOf(c.attachDir, c.progIds?.())
  for (const w of HOOK_WORKLOADS) {
    const p = progs.find((x) => x.attach === w.attach)
    if (!p && w.optional) continue
    if (!p) throw new Error(`${c.name}: no program on ${w.attach} of ${c.attachDir}`)
    const avgs = []
    const runs = []
    for (let round = 0; round < rounds; round++) {
      const a = statsOf(p.id)
      await generate(gen, c.cgroup, c.netns, w.mode, w.ip, SECONDS)
      const b = statsOf(p.id)
      const n = b.run_cnt - a.run_cnt
      if (n <= 0) throw new Error(`${c.name}: ${p.name} did not run for ${w.mode} ${w.ip}`)
      runs.push(n)
      avgs.push((b.run_time_ns - a.run_time_ns) / n)
    }
    lines.push(`| ${c.name} | ${w.hook} | ${p.name} (id ${p.id}) | ${w.mode === 'udp' ? 'UDP connect()' : 'UDP sendto()'} ${w.ip} | ${fmt(median(runs))} | ${median(avgs).toFixed(1)} | ${Math.min(...avgs).toFixed(1)} | ${Math.max(...avgs).toFixed(1)} |`)
  }
  return lines
}

function statsOf(id) {
  const p = JSON.parse(run('bpftool', ['prog', 'show', 'id', String(id), '--json']))
  return { run_cnt: p.run_cnt ?? 0, run_time_ns: p.run_time_ns ?? 0 }
}

async function eventsTable(gen, interceptor, cgroup, netns) {
  const before = interceptor.status()
  let delivered = 0
  let firstAt = 0n
  let lastAt = 0n
  let badKeys = 0
  const consumer = (async () => {
    for await (const e of interceptor.events({ batchSize: 8192 })) {
      if (delivered === 0) firstAt = process.hrtime.bigint()
      delivered++
      // Every event is looked at, as a real consumer would.
      if (e.reason_code !== 'DENY_DEFAULT' || e.dst_ip !== DENIED_IP) badKeys++
      lastAt = process.hrtime.bigint()
    }
  })()
  const r = await generate(gen, cgroup, netns, 'udp', DENIED_IP, EVENT_SECONDS)
  // Let the pipeline drain: stop when the counters account for every verdict or nothing moved for 1 s.
  let s = interceptor.status()
  for (let idle = 0, last = -1; idle < 10; ) {
    await new Promise((res) => setTimeout(res, 100))
    s = interceptor.status()
    const accounted = delivered + (s.droppedInKernel - before.droppedInKernel) + (s.droppedInQueue - before.droppedInQueue)
    if (accounted >= r.eperm) break
    if (delivered === last) idle++
    else idle = 0
    last = delivered
  }
  await interceptor.close({ detach: true })
  await consumer
  const emitted = s.eventsEmitted - before.eventsEmitted
  const dk = s.droppedInKernel - before.droppedInKernel
  const dq = s.droppedInQueue - before.droppedInQueue
  const seconds = Number(lastAt - firstAt) / 1e9
  const lines = [
    `Events from the kernel to a JavaScript \`for await (const e of interceptor.events())\` consumer: UDP connect() to a denied destination in a loop for ${EVENT_SECONDS} s (every call is a DENY_DEFAULT verdict, deny events are never sampled)`,
    '',
    '| measure | value |',
    '|---|---:|',
    `| denied connect() calls (generator, = verdicts) | ${fmt(r.eperm)} |`,
    `| generator connect() rate | ${fmt(r.per_sec)}/s |`,
    `| events_emitted (kernel ring buffer) | ${fmt(emitted)} |`,
    `| delivered to JavaScript | ${fmt(delivered)} |`,
    `| dropped_in_kernel | ${fmt(dk)} |`,
    `| dropped_in_queue | ${fmt(dq)} |`,
    `| delivered events/s (first to last event) | ${fmt(delivered / seconds)} |`,
    `| uncounted loss: verdicts - delivered - dropped_in_kernel - dropped_in_queue | ${fmt(r.eperm - delivered - dk - dq)} |`,
    `| emitted - delivered - dropped_in_queue | ${fmt(emitted - delivered - dq)} |`,
    `| events with an unexpected code or destination | ${fmt(badKeys)} |`,
  ]
  return lines.join('\n')
}

async function replaceTable(interceptor) {
  const lines = [
    'Time to replace the policy snapshot (JavaScript call to resolved promise: JSON.stringify, strict Rust parse, map writes, slot flip), median of 3, alternating sizes, back to back',
    '',
    '| rules | median ms | min ms | max ms | target | of which JSON.stringify (median ms) | JSON text in: Rust parse + apply (median ms) |',
    '|---:|---:|---:|---:|---|---:|---:|',
  ]
  const sizes = [10_000, 100_000]
  const snapshots = new Map(sizes.map((n) => [n, benchSnapshot(n)]))
  const samples = new Map(sizes.map((n) => [n, []]))
  const stringify = new Map(sizes.map((n) => [n, []]))
  const native = new Map(sizes.map((n) => [n, []]))
  for (let round = 0; round < 3; round++) {
    for (const n of sizes) {
      // Back to back: a replacement waits only for the RCU grace period of the previous flip, if still running.
      const t0 = process.hrtime.bigint()
      const summary = await interceptor.replacePolicySnapshot(snapshots.get(n))
      samples.get(n).push(Number(process.hrtime.bigint() - t0) / 1e6)
      if (summary.ipv4Rules < n) throw new Error(`replace ${n}: summary reports ${summary.ipv4Rules} IPv4 rules`)
      const t1 = process.hrtime.bigint()
      const text = JSON.stringify(snapshots.get(n))
      stringify.get(n).push(Number(process.hrtime.bigint() - t1) / 1e6)
      const t2 = process.hrtime.bigint()
      await interceptor.replacePolicySnapshot(text)
      native.get(n).push(Number(process.hrtime.bigint() - t2) / 1e6)
    }
  }
  for (const n of sizes) {
    const xs = samples.get(n)
    lines.push(`| ${fmt(n)} | ${median(xs).toFixed(1)} | ${Math.min(...xs).toFixed(1)} | ${Math.max(...xs).toFixed(1)} | < ${n === 10_000 ? 50 : 500} ms | ${median(stringify.get(n)).toFixed(1)} | ${median(native.get(n)).toFixed(1)} |`)
  }
  return lines.join('\n')
}

async function main() {
  console.log(`# Dataplane benchmarks\n\n${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), kernel ${os.release()}, node ${process.version}\n`)
  console.log(runCodecBench().table, '\n')
  if (!isRoot()) {
    console.log('The kernel benchmarks need root (BPF, cgroups, network namespaces): run `sudo pnpm bench:dataplane`.')
    process.exitCode = 1
    return
  }
  if (ONLY === 'replace') {
    const iso = new Isolation('ebpf-bench')
    let interceptor = null
    try {
      interceptor = await Interceptor.load({ cgroupRoot: iso.cgroup('replace'), pinDir: iso.pinDir('replace') })
      console.log(await replaceTable(interceptor))
    } finally {
      if (interceptor) await interceptor.close({ detach: true })
      for (const e of await iso.cleanup()) console.error(`cleanup: ${e.message}`)
    }
    return
  }
  ensureTools()
  const iso = new Isolation('ebpf-bench')
  const interceptors = []
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-bench-'))
  iso.defer(() => fs.rmSync(tmp, { recursive: true, force: true }))
  try {
    const gen = buildGenerator(tmp)
    const sysctls = { 'net.core.somaxconn': 4096, 'net.ipv4.tcp_max_syn_backlog': 4096 }
    const nsBase = iso.netns('base', sysctls)
    const plain = iso.cgroup('plain/work')
    const groups = [{ rows: [{ name: 'no programs', cgroup: plain, netns: nsBase }] }]
    const allowAll = attachAllowAll(iso, tmp)
    groups.push({ rows: [{ name: 'allow-all programs (hook floor)', cgroup: allowAll, netns: nsBase, attachDir: allowAll }] })
    const mountTop = cgroup2Mount()
    let dpError = null
    let layersLine = null
    for (const rules of [10, 100_000]) {
      const root = iso.cgroup(`dp${rules}`)
      const work = iso.cgroup(`dp${rules}/work`)
      const pinDir = iso.pinDir(`dp${rules}`)
      const snapshot = benchSnapshot(rules)
      let i = null
      const group = {
        async enter() {
          i = await Interceptor.load({ cgroupRoot: root, pinDir, disableLayers: DISABLE_LAYERS })
          interceptors.push(i)
          layersLine ??= `Dataplane layers in the eBPF rows: ${i.status().activeLayers.join(', ') || 'none'} (BENCH_DISABLE_LAYERS=${DISABLE_LAYERS.join(',')})`
          await i.replacePolicySnapshot(snapshot)
          i.upsertManagedCgroup({ path: work, workloadId: `bench-${rules}` })
        },
        async leave() {
          interceptors.splice(interceptors.indexOf(i), 1)
          await i.close({ detach: true })
        },
        rows: [],
      }
      const progIds = () => pinnedProgIds(pinDir)
      group.rows.push({ name: rules === 10 ? DP10 : DP100K, cgroup: work, netns: nsBase, attachDir: mountTop, progIds })
      if (rules === 10) {
        group.rows.push({ name: DP_UNMANAGED, cgroup: iso.cgroup('dp10/unmanaged'), netns: nsBase, attachDir: mountTop, progIds })
        group.rows.push({ name: DP_OUTSIDE, cgroup: plain, netns: nsBase, attachDir: mountTop, progIds })
      }
      groups.push(group)
    }
    try {
      await groups[2].enter()
      console.log(`${layersLine}\n`)
      await groups[2].leave()
    } catch (error) {
      dpError = error
      groups.splice(2)
      console.log(`The eBPF rows could not be measured: ${error.code ?? ''} ${error.message}\n`)
    }
    for (const n of ONLY === 'hooks' || ONLY === 'runtime' ? [] : [10, 1_000, 100_000]) {
      const ns = iso.netns(`ipt${n}`, sysctls)
      const ms = loadIptables(ns, n)
      groups.push({ rows: [{ name: `iptables OUTPUT, ${n.toLocaleString('en-US')} rules`, cgroup: plain, netns: ns, iptables: true }] })
      console.error(`iptables-restore of ${n} rules: ${ms.toFixed(0)} ms`)
    }
    if (ONLY !== 'runtime') console.log(await connectRateTables(gen, groups), '\n')
    if (dpError === null) {
      console.log(await bpfStatsTable(gen, groups.filter((g) => g.rows.some((r) => r.attachDir))), '\n')
      if (ONLY === 'hooks' || ONLY === 'runtime') return
      const evDir = iso.cgroup('dpev')
      const evInterceptor = await Interceptor.load({ cgroupRoot: evDir, pinDir: iso.pinDir('dpev'), ringBufferBytes: 16 << 20 })
      interceptors.push(evInterceptor)
      await evInterceptor.replacePolicySnapshot(benchSnapshot(10, { allowOneIn: 1 }))
      evInterceptor.upsertManagedCgroup({ path: iso.cgroup('dpev/work'), workloadId: 'bench-events' })
      // eventsTable closes (detaches) it.
      console.log(await eventsTable(gen, evInterceptor, iso.cgroup('dpev/work'), nsBase), '\n')
      interceptors.splice(interceptors.indexOf(evInterceptor), 1)
      const replacer = await Interceptor.load({ cgroupRoot: iso.cgroup('dprep'), pinDir: iso.pinDir('dprep') })
      interceptors.push(replacer)
      console.log(await replaceTable(replacer), '\n')
    }
  } finally {
    for (const i of interceptors) {
      try {
        await i.close({ detach: true })
      } catch (error) {
        console.error(`close: ${error.message}`)
      }
    }
    const errors = await iso.cleanup()
    for (const e of errors) console.error(`cleanup: ${e.message}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
