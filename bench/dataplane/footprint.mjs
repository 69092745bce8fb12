// `pnpm bench:footprint` (root only): what the agent costs in memory, and how long a policy replacement takes,
// in one run of the real `interceptor-ebpf agent` binary. Printed as markdown tables with ratios against the
// 10-rule baseline measured in the same run:
//
//   1. the agent's resident memory (VmRSS): idle with a 10-rule policy and one managed cgroup, with 100,000
//      rules, with the largest policy the dataplane takes (131,072 IPv4 + 131,072 IPv6 rules), and back at
//      10 rules (what the agent gives back);
//   2. where the idle RSS goes, mapping by mapping (/proc/PID/smaps: the binary, shared libraries, the BPF
//      ring buffer's mmap, malloc arenas, thread stacks);
//   3. the kernel memory of the BPF maps behind the agent's state (`bytes_memlock` of every map the agent
//      holds, the pinned programs use, or a map-in-map holds), per map, at 10 / 100,000 / the maximum rules;
//   4. the time to replace the policy with 10, 10,000 and 100,000 rules through the control socket: the
//      request line alone (agent: read, strict parse, compile, map writes, reply) and `interceptor-ebpf ctl
//      policy apply FILE` (the operator's command: process start, the client's own parse, the request);
//   5. RSS and threads under load and after it: 1,000 clients at once asking GetStatus 5 times each (every
//      GetStatus is a dataplane call on the blocking pool), then a flood of denied UDP sends from the managed
//      cgroup (every one a DENY_DEFAULT event through the agent's event pipeline and log).
//
// Everything it makes is its own: a cgroup under the discovered cgroup2 mount (the agent's cgroup root, and a
// managed child), a bpffs pin dir, a temp dir for the control socket and the policy files. All of it is removed
// at the end, also on failure: the agent is asked to `shutdown --detach`, killed if it does not go.
//
//   sudo pnpm bench:footprint                      # builds target/release/interceptor-ebpf first
//   sudo node bench/dataplane/footprint.mjs --bin /path/to/interceptor-ebpf   # another build (no cargo)
//
// Environment: FOOTPRINT_SETTLE_MS (default 3000): how long the agent is left alone before each RSS sample;
// FOOTPRINT_ROUNDS (default 3): rounds of the replace timings (median; sizes interleaved);
// FOOTPRINT_CLIENTS (default 1000), FOOTPRINT_FLOOD_SECONDS (default 5): the load of table 5.

import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Isolation, cgroup2Mount, isRoot, run, runIn } from './isolation.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.join(here, '..', '..')
const SETTLE_MS = Number(process.env.FOOTPRINT_SETTLE_MS ?? 3000)
const ROUNDS = Number(process.env.FOOTPRINT_ROUNDS ?? 3)
/** The dataplane's limit per family (docs/policy-snapshot.md; `MAX_RULES_PER_FAMILY` in the contract). */
const MAX_PER_FAMILY = 131_072
const REPLACE_SIZES = [10, 10_000, 100_000]
const CLIENTS = Number(process.env.FOOTPRINT_CLIENTS ?? 1000)
const FLOOD_SECONDS = Number(process.env.FOOTPRINT_FLOOD_SECONDS ?? 5)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const mib = (bytes) => (bytes / (1 << 20)).toFixed(1)
const count = (n) => n.toLocaleString('en-US')
const ratio = (x, base) => (base > 0 ? `${(x / base).toFixed(2)}` : '-')

function parseArgs(argv) {
  const args = { bin: null }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--bin' && i + 1 < argv.length) args.bin = path.resolve(argv[++i])
    else throw new Error(`unknown argument ${argv[i]} (usage: footprint.mjs [--bin PATH])`)
  }
  return args
}

// ---------------------------------------------------------------------------------------------------------
// Policies

/** A /32 in 10.0.0.0/8 or a /128 in fd00::/8 for rule i (distinct for i < 2^24). */
function v4(i) {
  const n = i + 1
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/32`
}
function v6(i) {
  const n = i + 1
  const hi = (n >> 16) & 0xffff
  const lo = (n & 0xffff).toString(16)
  // Canonical text (RFC 5952): no leading zero group after the `::`.
  return hi === 0 ? `fd00::${lo}/128` : `fd00::${hi.toString(16)}:${lo}/128`
}

/** `count` IPv4 rules, alternating allow and deny, TCP 443 (as `pnpm bench:dataplane` generates them). */
function snapshot(count) {
  const rules = []
  for (let i = 0; i < count; i++) {
    rules.push({ id: `r${i}`, action: i % 2 ? 'deny' : 'allow', cidr: v4(i), ports: [443], protocol: 'tcp' })
  }
  return { broker: [{ ip: '10.255.255.1', port: 8081 }], dns: [{ ip: '10.255.255.53' }], rules }
}

/**
 * The largest policy the dataplane takes: MAX_PER_FAMILY rules of each family. Without ports and with short
 * ids, so that the request line stays below the protocol's 16 MiB.
 */
function maxSnapshot() {
  const rules = []
  for (let i = 0; i < MAX_PER_FAMILY; i++) rules.push({ id: `a${i}`, action: 'deny', cidr: v4(i) })
  for (let i = 0; i < MAX_PER_FAMILY; i++) rules.push({ id: `b${i}`, action: 'deny', cidr: v6(i) })
  return { broker: [{ ip: '10.255.255.1', port: 8081 }], dns: [{ ip: '10.255.255.53' }], rules }
}

// ---------------------------------------------------------------------------------------------------------
// The agent

class AgentProcess {
  constructor(bin, env) {
    this.bin = bin
    this.socket = env.BROKER_EBPF_CONTROL_SOCKET
    this.stderr = ''
    this.records = []
    this.exited = null
    this.child = spawn(bin, ['agent'], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.exit = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve((this.exited = { code, signal }))))
    // Both streams are read all along so the agent never waits on a pipe. Standard output holds the verdict
    // records (not kept); the agent's own lines (agent_event) are on standard error, one JSON envelope each.
    this.child.stdout.on('data', () => {})
    let pending = ''
    this.child.stderr.on('data', (chunk) => {
      this.stderr += chunk
      pending += chunk
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line.includes('"agent_event"')) this.records.push(JSON.parse(line.slice(line.indexOf('{'))))
      }
    })
  }

  get pid() {
    return this.child.pid
  }

  async started(timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const failed = this.records.find((r) => r.agent_event === 'start_failed')
      if (failed || this.exited) throw new Error(`the agent did not start: ${JSON.stringify(failed ?? this.exited)} ${this.stderr}`)
      if (this.records.some((r) => r.agent_event === 'started')) return
      await sleep(50)
    }
    throw new Error(`no started line within ${timeoutMs} ms; stderr: ${this.stderr}`)
  }

  ctl(args, timeoutMs = 120_000) {
    return execFileSync(this.bin, ['ctl', '--socket', this.socket, '--timeout-ms', String(timeoutMs), ...args], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    })
  }

  /** Shutdown --detach (pins and links removed), SIGKILL if it is still there after 10 s. */
  async stop() {
    if (this.exited) return
    try {
      this.ctl(['shutdown', '--detach'], 10_000)
    } catch (error) {
      console.error(`shutdown: ${error.message.split('\n')[0]}`)
    }
    const gone = await Promise.race([this.exit, sleep(10_000).then(() => null)])
    if (!gone) {
      this.child.kill('SIGKILL')
      await this.exit
    }
  }
}

/** One request line on the control socket; resolves with the reply and the round-trip time in ms. */
function request(socketPath, line, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const sock = net.createConnection(socketPath)
    const chunks = []
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`no reply within ${timeoutMs} ms`))
    }, timeoutMs)
    sock.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    sock.on('connect', () => sock.write(line))
    sock.on('data', (chunk) => {
      chunks.push(chunk)
      if (!chunk.includes(10)) return
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      clearTimeout(timer)
      sock.destroy()
      const text = Buffer.concat(chunks).toString('utf8')
      resolve({ ms, reply: JSON.parse(text.slice(0, text.indexOf('\n'))) })
    })
  })
}

async function replace(agent, snap) {
  const line = `${JSON.stringify({ command: 'ReplacePolicySnapshot', payload: snap })}\n`
  const { ms, reply } = await request(agent.socket, line)
  if (reply.ok !== true) throw new Error(`ReplacePolicySnapshot refused: ${JSON.stringify(reply.error).slice(0, 600)}`)
  const want = snap.rules.length
  const got = reply.data.ipv4Rules + reply.data.ipv6Rules
  if (got !== want) throw new Error(`ReplacePolicySnapshot: ${got} rules applied, ${want} sent`)
  return ms
}

/**
 * An agent on a world of its own (`name`): cgroup root `<iso>/<name>` with one managed child, a pin dir, a
 * socket dir; the 10-rule policy file applied at start. Stopped (detached) before the world is removed.
 */
async function startAgent(bin, iso, tmp, name, policyFile) {
  const cgroupRoot = iso.cgroup(name)
  const work = iso.cgroup(`${name}/work`)
  const pinDir = iso.pinDir(name)
  const agent = new AgentProcess(bin, {
    BROKER_EBPF_CGROUP_ROOT: cgroupRoot,
    BROKER_EBPF_PIN_DIR: pinDir,
    BROKER_EBPF_CONTROL_SOCKET: path.join(tmp, `run-${name}`, 'agentd.sock'),
    BROKER_EBPF_POLICY_FILE: policyFile,
  })
  // Registered last, so it runs first: the agent detaches and lets go of its pins before they are removed.
  iso.defer(() => agent.stop())
  await agent.started()
  const payloadPath = `/${path.relative(fs.realpathSync(cgroup2Mount()), fs.realpathSync(work))}`
  agent.ctl(['cgroup', 'add', payloadPath, '--workload-id', `footprint-${name}`])
  return { agent, work, pinDir }
}

// ---------------------------------------------------------------------------------------------------------
// Measurements

/** VmRSS, RssAnon, RssFile, VmHWM (bytes) and the thread count, from /proc/PID/status. */
function status(pid) {
  const out = {}
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(VmRSS|RssAnon|RssFile|VmHWM|Threads):\s+(\d+)/.exec(line)
    if (m) out[m[1]] = m[1] === 'Threads' ? Number(m[2]) : Number(m[2]) * 1024
  }
  return out
}

/**
 * The stack pointer of every thread of PID that waits in a system call (an idle agent's threads all do), from
 * /proc/PID/task/TID/syscall, whose last two fields are the stack and instruction pointers.
 */
function threadStackPointers(pid) {
  const sps = []
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let fields
    try {
      fields = fs.readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').trim().split(' ')
    } catch {
      continue
    }
    if (fields.length >= 3 && fields[0] !== 'running') sps.push(parseInt(fields[fields.length - 2], 16))
  }
  return sps
}

/**
 * The resident bytes of every mapping of /proc/PID/smaps, by kind. A thread stack is the anonymous mapping a
 * thread's stack pointer is in; the rest of the anonymous memory is the allocator's (glibc's arenas, blocks
 * mapped on their own; musl's groups). The kernel merges adjacent anonymous mappings of the same permissions,
 * so where the allocator maps memory next to a stack (musl) the split between those two rows is approximate.
 */
function smapsByKind(pid, bin) {
  const kinds = new Map()
  const add = (kind, bytes) => kinds.set(kind, (kinds.get(kind) ?? 0) + bytes)
  const binary = fs.realpathSync(bin)
  const sps = threadStackPointers(pid)
  let cur = null
  const flush = () => {
    if (cur === null) return
    let kind
    if (cur.name === 'anon_inode:bpf-map') kind = 'BPF map mmaps (ring buffer, config map)'
    else if (cur.name === binary) kind = 'the agent binary (text, data)'
    else if (cur.name.startsWith('/')) kind = 'shared libraries (libc, libm, ld.so, libgcc)'
    else if (cur.name === '[heap]') kind = 'main heap (brk)'
    else if (cur.name === '[stack]') kind = 'main thread stack'
    else if (cur.name === '') {
      const stack = sps.some((sp) => sp >= cur.start && sp < cur.end)
      kind = stack ? 'thread stacks' : 'malloc arenas and mmapped allocations'
    } else kind = 'kernel pseudo-mappings (vdso, vvar)'
    add(kind, cur.rss)
  }
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head) {
      flush()
      cur = { start: parseInt(head[1], 16), end: parseInt(head[2], 16), perms: head[3], name: head[4].trim(), rss: 0 }
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss && cur) cur.rss = Number(rss[1]) * 1024
  }
  flush()
  return kinds
}

/**
 * Every BPF map behind the agent's state: the maps it holds a descriptor of (/proc/PID/fdinfo), the maps the
 * pinned programs use, the pinned maps, and the inner maps of its map-in-maps (the policy's group maps of both
 * slots). Returns [{id, name, type, bytes}] with `bytes_memlock` as the kernel reports it.
 */
function kernelMaps(pid, pinDir) {
  const ids = new Set()
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      continue
    }
    if (target !== 'anon_inode:bpf-map') continue
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
    const id = /^map_id:\s+(\d+)/m.exec(info)
    if (id) ids.add(Number(id[1]))
  }
  for (const name of fs.readdirSync(pinDir)) {
    const pinned = path.join(pinDir, name)
    if (name.startsWith('prog_')) {
      for (const id of JSON.parse(run('bpftool', ['-j', 'prog', 'show', 'pinned', pinned])).map_ids ?? []) ids.add(id)
    } else if (!name.startsWith('link_')) {
      ids.add(JSON.parse(run('bpftool', ['-j', 'map', 'show', 'pinned', pinned])).id)
    }
  }
  const all = new Map(JSON.parse(run('bpftool', ['-j', 'map', 'show'])).map((m) => [m.id, m]))
  for (const id of [...ids]) {
    const m = all.get(id)
    if (m === undefined || !m.type.endsWith('_of_maps')) continue
    for (const entry of JSON.parse(run('bpftool', ['-j', 'map', 'dump', 'id', String(id)]))) {
      const bytes = (entry.value ?? []).map((b) => parseInt(b, 16))
      if (bytes.length === 4) ids.add(bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24))
    }
  }
  const maps = []
  for (const id of ids) {
    const m = all.get(id)
    if (m === undefined) throw new Error(`map id ${id} is not listed by bpftool map show`)
    maps.push({ id, name: m.name ?? `id ${id}`, type: m.type, bytes: m.bytes_memlock ?? 0 })
  }
  return maps
}

const total = (maps) => maps.reduce((s, m) => s + m.bytes, 0)

async function sample(agent, pinDir, bin) {
  await sleep(SETTLE_MS)
  return { status: status(agent.pid), smaps: smapsByKind(agent.pid, bin), maps: kernelMaps(agent.pid, pinDir) }
}

/** Samples VmRSS and the thread count every 10 ms while `work` runs; resolves with its result and the peaks. */
async function peaksDuring(pid, work) {
  let rss = 0
  let threads = 0
  const take = () => {
    const st = status(pid)
    rss = Math.max(rss, st.VmRSS)
    threads = Math.max(threads, st.Threads)
  }
  take()
  const timer = setInterval(take, 10)
  try {
    const result = await work()
    take()
    return { result, rss, threads }
  } finally {
    clearInterval(timer)
  }
}

/** `clients` connections at once, each sending `command` `times` times in a row (a reply before the next). */
function burst(socketPath, clients, command, times) {
  const one = () =>
    new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath)
      let left = times
      let pending = ''
      sock.on('error', reject)
      sock.on('connect', () => sock.write(`{"command":"${command}"}\n`))
      sock.on('data', (chunk) => {
        pending += chunk
        let nl
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl)
          pending = pending.slice(nl + 1)
          if (!line.startsWith('{"ok":true')) {
            sock.destroy()
            reject(new Error(`${command}: ${line.slice(0, 300)}`))
            return
          }
          if (--left === 0) {
            sock.end()
            resolve()
          } else sock.write(`{"command":"${command}"}\n`)
        }
      })
    })
  return Promise.all(Array.from({ length: clients }, one))
}

/** The load generator of `pnpm bench:dataplane` (connect_rate.c), built into `dir`. */
function buildGenerator(dir) {
  const out = path.join(dir, 'connect_rate')
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out, path.join(here, 'connect_rate.c')], { stdio: 'inherit' })
  return out
}

async function loadTable(agent, iso, work, tmp) {
  const lines = [
    `Under load: ${count(CLIENTS)} clients at once asking GetStatus 5 times each, then a ${FLOOD_SECONDS} s flood of denied UDP sends from the managed cgroup (RSS after: ${SETTLE_MS} ms later)`,
    '',
    '| load | RSS before MiB | peak RSS MiB | peak threads | RSS after MiB | threads after | what it did |',
    '|---|---:|---:|---:|---:|---:|---|',
  ]
  const before = status(agent.pid)
  const t0 = process.hrtime.bigint()
  const b = await peaksDuring(agent.pid, () => burst(agent.socket, CLIENTS, 'GetStatus', 5))
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  await sleep(SETTLE_MS)
  const afterBurst = status(agent.pid)
  lines.push(
    `| ${count(CLIENTS)} clients x 5 GetStatus | ${mib(before.VmRSS)} | ${mib(b.rss)} | ${b.threads} | ${mib(afterBurst.VmRSS)} | ${afterBurst.Threads} | ${count(CLIENTS * 5)} replies in ${ms.toFixed(0)} ms |`,
  )

  const gen = buildGenerator(tmp)
  const netns = iso.netns('flood')
  const st0 = JSON.parse(agent.ctl(['--json', 'status']))
  // 127.0.0.1 in the bench netns: no rule of the 10-rule policy allows it, so every send is DENY_DEFAULT.
  const f = await peaksDuring(agent.pid, () => runIn(work, netns, [gen, 'udpsend', '127.0.0.1', 7001, FLOOD_SECONDS * 1000, 1]))
  if (f.result.code !== 0) throw new Error(`connect_rate failed (${f.result.code}): ${f.result.stderr.trim()}`)
  const r = JSON.parse(f.result.stdout)
  await sleep(SETTLE_MS)
  const afterFlood = status(agent.pid)
  const st1 = JSON.parse(agent.ctl(['--json', 'status']))
  const emitted = st1.eventsEmitted - st0.eventsEmitted
  const dropped = st1.droppedInKernel - st0.droppedInKernel + (st1.droppedInQueue - st0.droppedInQueue)
  lines.push(
    `| ${FLOOD_SECONDS} s flood of denied sends | ${mib(afterBurst.VmRSS)} | ${mib(f.rss)} | ${f.threads} | ${mib(afterFlood.VmRSS)} | ${afterFlood.Threads} | ${count(r.eperm)} EPERMs, ${count(emitted)} events, ${count(emitted - dropped)} delivered, ${count(dropped)} dropped (counted) |`,
  )
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------------------
// Tables

function rssTable(samples, base) {
  const lines = [
    `Agent resident memory (/proc/PID/status, after ${SETTLE_MS} ms without requests)`,
    '',
    '| state | VmRSS MiB | RssAnon MiB | RssFile MiB | threads | vs idle, 10 rules |',
    '|---|---:|---:|---:|---:|---:|',
  ]
  for (const [label, s] of samples) {
    const st = s.status
    lines.push(`| ${label} | ${mib(st.VmRSS)} | ${mib(st.RssAnon)} | ${mib(st.RssFile)} | ${st.Threads} | ${ratio(st.VmRSS, base.status.VmRSS)} |`)
  }
  const last = samples[samples.length - 1][1]
  lines.push('', `Peak RSS of the process (VmHWM), at the end: ${mib(last.status.VmHWM)} MiB`)
  return lines.join('\n')
}

function smapsTable(samples) {
  const kinds = [...new Set(samples.flatMap(([, s]) => [...s.smaps.keys()]))]
  kinds.sort((a, b) => (samples[0][1].smaps.get(b) ?? 0) - (samples[0][1].smaps.get(a) ?? 0))
  const lines = [
    'Where the RSS goes (/proc/PID/smaps, resident bytes by mapping kind)',
    '',
    `| mapping | ${samples.map(([label]) => `${label} MiB`).join(' | ')} |`,
    `|---|${samples.map(() => '---:').join('|')}|`,
  ]
  for (const k of kinds) lines.push(`| ${k} | ${samples.map(([, s]) => mib(s.smaps.get(k) ?? 0)).join(' | ')} |`)
  const sums = samples.map(([, s]) => [...s.smaps.values()].reduce((a, b) => a + b, 0))
  lines.push(`| total | ${sums.map(mib).join(' | ')} |`)
  return lines.join('\n')
}

function mapsTable(samples) {
  const byName = (maps) => {
    const out = new Map()
    for (const m of maps) {
      const e = out.get(m.name) ?? { type: m.type, n: 0, bytes: 0 }
      e.n++
      e.bytes += m.bytes
      out.set(m.name, e)
    }
    return out
  }
  const named = samples.map(([label, s]) => [label, byName(s.maps)])
  const names = [...new Set(named.flatMap(([, m]) => [...m.keys()]))]
  names.sort((a, b) => (named[0][1].get(b)?.bytes ?? 0) - (named[0][1].get(a)?.bytes ?? 0))
  const base = total(samples[0][1].maps)
  const lines = [
    'Kernel memory of the BPF maps (bytes_memlock of every map behind the agent: its map fds, the pinned programs\' maps, the pinned maps, the inner maps of both policy slots)',
    '',
    `| map | type | ${named.map(([label]) => `${label} MiB`).join(' | ')} |`,
    `|---|---|${named.map(() => '---:').join('|')}|`,
  ]
  // Maps under 64 KiB in every column (config, counters, slot metadata) share one row.
  const small = names.filter((n) => named.every(([, m]) => (m.get(n)?.bytes ?? 0) < 65536))
  for (const n of names.filter((x) => !small.includes(x))) {
    const first = named.find(([, m]) => m.has(n))[1].get(n)
    const cells = named.map(([, m]) => {
      const e = m.get(n)
      return e === undefined ? '-' : `${mib(e.bytes)}${e.n > 1 ? ` (${e.n} maps)` : ''}`
    })
    lines.push(`| ${n} | ${first.type} | ${cells.join(' | ')} |`)
  }
  if (small.length > 0) {
    const cells = named.map(([, m]) => mib(small.reduce((sum, n) => sum + (m.get(n)?.bytes ?? 0), 0)))
    lines.push(`| ${small.length} maps under 64 KiB (${small.join(', ')}) | | ${cells.join(' | ')} |`)
  }
  const totals = samples.map(([, s]) => total(s.maps))
  lines.push(`| **total** | | ${totals.map((t) => `**${mib(t)}**`).join(' | ')} |`)
  lines.push(`| vs 10 rules | | ${totals.map((t) => ratio(t, base)).join(' | ')} |`)
  return lines.join('\n')
}

function replaceTable(socketMs, ctlMs) {
  const base = median(socketMs.get(10))
  const ctlBase = median(ctlMs.get(10))
  const lines = [
    `Policy replacement through the control socket, median of ${ROUNDS} rounds (sizes interleaved; the request line alone: agent read, strict parse, compile, map writes, reply; \`ctl policy apply FILE\`: process start, the client's parse, the same request)`,
    '',
    '| rules | request line ms | min | max | vs 10 rules | ctl policy apply ms | vs 10 rules |',
    '|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const n of REPLACE_SIZES) {
    const xs = socketMs.get(n)
    const cs = ctlMs.get(n)
    lines.push(
      `| ${count(n)} | ${median(xs).toFixed(1)} | ${Math.min(...xs).toFixed(1)} | ${Math.max(...xs).toFixed(1)} | ${ratio(median(xs), base)} | ${median(cs).toFixed(1)} | ${ratio(median(cs), ctlBase)} |`,
    )
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2))
  if (!isRoot()) {
    console.error('bench:footprint needs root: it runs the agent, which loads the eBPF dataplane (sudo pnpm bench:footprint)')
    process.exitCode = 1
    return
  }
  let bin = args.bin
  if (bin === null) {
    execFileSync('cargo', ['build', '--release', '--package', 'interceptor-ebpf-agent', '--bin', 'interceptor-ebpf'], {
      cwd: root,
      stdio: 'inherit',
    })
    bin = path.join(root, 'target', 'release', 'interceptor-ebpf')
  }
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()
  console.log(`# Agent footprint\n\n${bin} (${version}); ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), kernel ${os.release()}, ${mib(os.totalmem())} MiB RAM\n`)

  const iso = new Isolation('ebpf-footprint')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-footprint-'))
  iso.defer(() => fs.rmSync(tmp, { recursive: true, force: true }))
  let agent = null
  try {
    const policy10 = path.join(tmp, 'policy-10.json')
    fs.writeFileSync(policy10, JSON.stringify(snapshot(10)))
    let work
    let pinDir
    ;({ agent, work, pinDir } = await startAgent(bin, iso, tmp, 'policies', policy10))

    const idle = await sample(agent, pinDir, bin)
    console.error(`idle, 10 rules: VmRSS ${mib(idle.status.VmRSS)} MiB`)
    await replace(agent, snapshot(100_000))
    const at100k = await sample(agent, pinDir, bin)
    console.error(`100,000 rules: VmRSS ${mib(at100k.status.VmRSS)} MiB`)
    const max = maxSnapshot()
    const maxRules = max.rules.length
    await replace(agent, max)
    const atMax = await sample(agent, pinDir, bin)
    console.error(`${count(maxRules)} rules: VmRSS ${mib(atMax.status.VmRSS)} MiB`)

    const snapshots = new Map(REPLACE_SIZES.map((n) => [n, snapshot(n)]))
    const files = new Map(REPLACE_SIZES.map((n) => [n, path.join(tmp, `policy-${n}.json`)]))
    for (const n of REPLACE_SIZES) fs.writeFileSync(files.get(n), JSON.stringify(snapshots.get(n)))
    const socketMs = new Map(REPLACE_SIZES.map((n) => [n, []]))
    const ctlMs = new Map(REPLACE_SIZES.map((n) => [n, []]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const n of REPLACE_SIZES) {
        socketMs.get(n).push(await replace(agent, snapshots.get(n)))
        const t0 = process.hrtime.bigint()
        agent.ctl(['policy', 'apply', files.get(n)])
        ctlMs.get(n).push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
    }
    // Back to 10 rules, applied a few times so no earlier generation's rule ids are still cached for the
    // events of the ring buffer (the dataplane keeps the ids of the last four generations).
    for (let i = 0; i < 4; i++) await replace(agent, snapshot(10))
    const back = await sample(agent, pinDir, bin)

    const maxLabel = `${count(maxRules)} rules (max)`
    const rssSamples = [
      ['idle, 10 rules, 1 managed cgroup', idle],
      ['100,000 rules', at100k],
      [`${maxLabel}`, atMax],
      [`10 rules again, after the replace timings`, back],
    ]
    console.log(rssTable(rssSamples, idle), '\n')
    console.log(smapsTable([['idle, 10 rules', idle], ['100,000 rules', at100k], [maxLabel, atMax], ['10 rules again', back]]), '\n')
    console.log(mapsTable([['10 rules', idle], ['100,000 rules', at100k], [maxLabel, atMax]]), '\n')
    console.log(replaceTable(socketMs, ctlMs), '\n')
    // The load on an agent of its own, started like the first: what a large policy left behind (before this
    // branch's heap work, 180 MiB) would otherwise be read as the load's.
    await agent.stop()
    ;({ agent, work } = await startAgent(bin, iso, tmp, 'load', policy10))
    await sleep(SETTLE_MS)
    console.log(await loadTable(agent, iso, work, tmp), '\n')
  } finally {
    for (const e of await iso.cleanup()) console.error(`cleanup: ${e.message}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
