// `pnpm bench:dns` (root only): what rules by name (SPEC 4b) cost a managed workload, issue 20 point 7.
//
//   1. the latency of a DNS query, p50 and p99, from a client in the managed cgroup:
//      (a) policy without names: the query goes straight to the resolver (ALLOW_DNS, not steered): the baseline;
//      (b) policy with an fqdn rule naming the queried name: steered through the agent's DNS proxy, which
//          forwards it, learns the answer's address and only then releases the answer;
//      (c) the same with `dnsQueries: "policy"` and a name no rule names: the proxy answers REFUSED itself.
//      Each with one connected UDP socket for every query, and with a fresh socket per query (socket, connect,
//      send, recv, close: what glibc's stub resolver does per lookup, so the steering of the connect is inside).
//   2. the cost of the steering on a connect: UDP connect() rate to the DNS endpoint without names (ALLOW_DNS,
//      the UDP verdict cache applies) vs with names (steered: rewritten to the proxy, recorded in a map, never
//      cached); TCP connect() to a closed port (ECONNREFUSED at once) of a CIDR-allowed address, and of an
//      address learned from an answer.
//
// Everything runs in one network namespace, cgroups and a pin directory this script creates and removes at the
// end, even on failure (bench/dataplane/isolation.mjs). The real agent (`target/release/interceptor-ebpf
// agent`, built by `pnpm run build`) runs inside the netns (its proxy must share it with the workload; entered
// with nsenter, which unlike `ip netns exec` does not remount /sys) and outside its own cgroup root, so its
// sockets are never steered. A stub resolver (bench/dns/dns_load.c `stub`) answers on 10.0.0.53:53.
//
// Every measurement checks what it measured: the answers' rcodes, the proxy's own counters (a baseline query
// that reached the proxy, or a steered one that did not, stops the bench), no EPERM where a connect is allowed,
// and EPERM for the learned address before it was learned.
//
// Environment: BENCH_ROUNDS (default 3, configurations rotated each round; each cell is the median over rounds;
// table 2 runs at least as many rounds as it has rows),
// BENCH_DNS_QUERIES per configuration, socket mode and round (default 20000), BENCH_SECONDS per connect-rate
// measurement (default 1).

import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Isolation, cgroup2Mount, isRoot, run, runIn } from '../dataplane/isolation.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const AGENT = path.join(root, 'target/release/interceptor-ebpf')

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const QUERIES = Number(process.env.BENCH_DNS_QUERIES ?? 20000)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1)

const RESOLVER = '10.0.0.53'
const PROXY_PORT = 15353
const NAMED = 'api.bench.test'
const NAMED_ADDRESS = '10.0.1.1'
const REFUSED_NAME = 'blocked.bench.test'
const CIDR_ADDRESS = '10.0.2.1'
// Nobody listens there: an allowed TCP connect fails at once with ECONNREFUSED.
const CLOSED_PORT = 9

const BASE = {
  broker: [{ ip: '10.0.0.5', port: 8081 }],
  dns: [{ ip: RESOLVER }],
  // No allow events: the rows measure the verdict path, not a consumer of events competing for the CPU.
  sampling: { allowOneIn: 0, unmanagedOneIn: 0 },
}
const CIDR_RULE = { id: 'cidr-allowed', action: 'allow', cidr: '10.0.2.0/24' }
const FQDN_RULE = { id: 'api-by-name', action: 'allow', fqdn: NAMED }
const POLICIES = {
  plain: { ...BASE, rules: [CIDR_RULE] },
  named: { ...BASE, rules: [CIDR_RULE, FQDN_RULE], dnsQueries: 'any' },
  strict: { ...BASE, rules: [CIDR_RULE, FQDN_RULE], dnsQueries: 'policy' },
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const us = (ns) => (ns / 1000).toFixed(1)
const signedUs = (ns) => `${ns >= 0 ? '+' : ''}${us(ns)}`
const ratio = (x, base) => `${(x / base).toFixed(2)}x`
const fmt = (n) => Math.round(n).toLocaleString('en-US')

function buildHelpers(dir) {
  const out = {}
  for (const [name, src] of [
    ['dns_load', path.join(here, 'dns_load.c')],
    ['connect_rate', path.join(here, '../dataplane/connect_rate.c')],
  ]) {
    out[name] = path.join(dir, name)
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out[name], src], { stdio: 'inherit' })
  }
  return out
}

/** A long-running process inside `netns` (not in any bench cgroup), with its stderr kept for failures. */
function spawnInNetns(iso, netns, argv, env = {}) {
  const child = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  const state = { child, stdout: '', stderr: '', exited: null }
  child.stdout.on('data', (d) => {
    // Only the first lines matter (readiness); a flood of verdict records is not kept.
    if (state.stdout.length < 65536) state.stdout += d
  })
  child.stderr.on('data', (d) => {
    state.stderr = (state.stderr + d).slice(-65536)
  })
  child.on('exit', (code, signal) => {
    state.exited = { code, signal }
  })
  iso.defer(
    () =>
      new Promise((resolve) => {
        if (state.exited) return resolve()
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000)
        child.once('exit', () => {
          clearTimeout(kill)
          resolve()
        })
        child.kill('SIGTERM')
      }),
  )
  return state
}

async function waitFor(what, state, test, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (state.exited) throw new Error(`${what} exited (${JSON.stringify(state.exited)}):\n${state.stderr}`)
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${state.stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function ctl(socket, args) {
  return run(AGENT, ['ctl', '--socket', socket, ...args])
}
const dnsStatus = (socket) => JSON.parse(ctl(socket, ['-o', 'json', 'dns']))

async function inWorkload(cg, netns, argv) {
  const r = await runIn(cg, netns, argv)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

const CONFIGS = [
  { key: 'a', label: '(a) policy without names: direct to the resolver', policy: 'plain', name: NAMED, rcode: 'noerror', proxied: false },
  { key: 'b', label: '(b) fqdn rule names it: through the proxy, answer learned', policy: 'named', name: NAMED, rcode: 'noerror', proxied: true },
  { key: 'c', label: '(c) `dnsQueries: "policy"`, unnamed name: REFUSED by the proxy', policy: 'strict', name: REFUSED_NAME, rcode: 'refused', proxied: true },
]
const MODES = ['connected', 'fresh']

async function main() {
  if (!isRoot()) {
    console.error('bench:dns needs root (BPF, cgroups, network namespaces): run `sudo pnpm bench:dns`')
    process.exit(1)
  }
  if (!fs.existsSync(AGENT)) {
    console.error(`${AGENT} is missing: run \`pnpm run build\` first`)
    process.exit(1)
  }
  for (const cmd of ['gcc', 'ip', 'nsenter']) {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    } catch {
      console.error(`${cmd} is required (apt-get install gcc iproute2 util-linux)`)
      process.exit(1)
    }
  }

  const loadAtStart = os.loadavg()
  const iso = new Isolation('ie-dnsbench')
  const failures = []
  // Interrupted (Ctrl-C, a timeout's SIGTERM): undo everything made so far before leaving.
  let interrupted = false
  const onSignal = async (signal) => {
    if (interrupted) return
    interrupted = true
    console.error(`${signal}: removing the bench's netns, cgroups and pins`)
    for (const e of await iso.cleanup()) console.error(`cleanup: ${e.message}`)
    process.exit(1)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ie-dnsbench-'))
    iso.defer(() => fs.rmSync(tmp, { recursive: true, force: true }))
    const bin = buildHelpers(tmp)
    const socket = path.join(tmp, 'agentd.sock')

    const netns = iso.netns('ns')
    // Every address is local in this namespace: the resolver's, the learned one and the CIDR-allowed one.
    run('ip', ['-n', netns, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', 'local'])
    const cgroupRoot = iso.cgroup('root')
    const wl = iso.cgroup('root/wl')
    const pinDir = iso.pinDir('pins')

    const stub = spawnInNetns(iso, netns, [bin.dns_load, 'stub', RESOLVER, '53', `${NAMED}=${NAMED_ADDRESS}`])
    await waitFor('the stub resolver', stub, () => stub.stdout.includes('"listening"'))

    const agent = spawnInNetns(iso, netns, [AGENT, 'agent'], {
      BROKER_EBPF_CGROUP_ROOT: cgroupRoot,
      BROKER_EBPF_PIN_DIR: pinDir,
      BROKER_EBPF_CONTROL_SOCKET: socket,
      BROKER_EBPF_DNS_PROXY_PORT: String(PROXY_PORT),
      BROKER_EBPF_SOCKET_MODE: '0600',
      // The agent still formats and writes every record (the refusals of (c) are 2 x QUERIES of them), but
      // nothing in this process has to read them while it times the client.
      BROKER_EBPF_VERDICT_LOG: '/dev/null',
      RUST_LOG: 'warn',
    })
    await waitFor('the agent', agent, () => {
      if (!fs.existsSync(socket)) return false
      try {
        return dnsStatus(socket).serving === true
      } catch {
        return false
      }
    })
    // As /proc/<pid>/cgroup prints it: below the cgroup2 mount.
    const wlPath = `/${path.relative(cgroup2Mount(), wl)}`
    ctl(socket, ['cgroup', 'add', wlPath, '--workload-id', 'dns-bench'])

    const policyFiles = {}
    for (const [name, snapshot] of Object.entries(POLICIES)) {
      policyFiles[name] = path.join(tmp, `${name}.json`)
      fs.writeFileSync(policyFiles[name], JSON.stringify(snapshot))
    }
    let active = null
    const apply = async (name) => {
      if (active === name) return
      ctl(socket, ['policy', 'apply', policyFiles[name]])
      active = name
      // Let the agent finish what follows a replacement before anything is timed.
      await new Promise((r) => setTimeout(r, 200))
    }
    const client = (argv) => inWorkload(wl, netns, argv)

    // The learned row must measure a learned address: before any answer taught it, it is refused.
    await apply('named')
    const before = await client([bin.dns_load, 'tcprefused', NAMED_ADDRESS, String(CLOSED_PORT), '20'])
    if (before.eperm !== before.calls || before.calls === 0) {
      throw new Error(`${NAMED_ADDRESS} must be refused before it is learned: ${JSON.stringify(before)}`)
    }

    // Table 1.
    const lat = {}
    for (const c of CONFIGS) for (const m of MODES) lat[`${c.key}/${m}`] = { p50: [], p99: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < CONFIGS.length; i++) {
        const c = CONFIGS[(i + round) % CONFIGS.length]
        await apply(c.policy)
        for (const mode of round % 2 ? [...MODES].reverse() : MODES) {
          const q0 = dnsStatus(socket).counters
          const r = await client([bin.dns_load, 'query', RESOLVER, '53', c.name, String(QUERIES), mode])
          const q1 = dnsStatus(socket).counters
          const reached = q1.queries - q0.queries
          if (r[c.rcode] !== QUERIES) throw new Error(`${c.label}, ${mode}: expected ${QUERIES} ${c.rcode} answers: ${JSON.stringify(r)}`)
          if (c.proxied ? reached < QUERIES : reached !== 0) {
            throw new Error(`${c.label}, ${mode}: ${reached} of ${QUERIES} queries reached the proxy`)
          }
          if (c.rcode === 'refused' && q1.refused - q0.refused < QUERIES) {
            throw new Error(`${c.label}, ${mode}: the proxy counted ${q1.refused - q0.refused} refusals`)
          }
          lat[`${c.key}/${mode}`].p50.push(r.p50_ns)
          lat[`${c.key}/${mode}`].p99.push(r.p99_ns)
        }
      }
    }
    const learned = dnsStatus(socket).learned.filter((l) => l.name === NAMED && l.address === NAMED_ADDRESS)
    if (learned.length === 0) throw new Error(`the proxy never learned ${NAMED} -> ${NAMED_ADDRESS}`)

    // Table 2. Each generator: the rows it compares run the same loop, rotated each round.
    const ms = String(Math.round(SECONDS * 1000))
    const ROWS = [
      { group: 'udp', label: `UDP connect() to the resolver ${RESOLVER}:53, policy without names (ALLOW_DNS, cached)`, policy: 'plain', argv: [bin.connect_rate, 'udp', RESOLVER, '53', ms], ok: 'ok' },
      { group: 'udp', label: `UDP connect() to the resolver ${RESOLVER}:53, policy with names (steered to the proxy)`, policy: 'named', argv: [bin.connect_rate, 'udp', RESOLVER, '53', ms], ok: 'ok' },
      { group: 'tcp', label: `TCP connect() to CIDR-allowed ${CIDR_ADDRESS}, policy without names`, policy: 'plain', argv: [bin.dns_load, 'tcprefused', CIDR_ADDRESS, String(CLOSED_PORT), ms], ok: 'econnrefused' },
      { group: 'tcp', label: `TCP connect() to CIDR-allowed ${CIDR_ADDRESS}, policy with names`, policy: 'named', argv: [bin.dns_load, 'tcprefused', CIDR_ADDRESS, String(CLOSED_PORT), ms], ok: 'econnrefused' },
      { group: 'tcp', label: `TCP connect() to learned ${NAMED_ADDRESS} (${NAMED}), policy with names`, policy: 'named', argv: [bin.dns_load, 'tcprefused', NAMED_ADDRESS, String(CLOSED_PORT), ms], ok: 'econnrefused' },
    ]
    const rates = ROWS.map(() => [])
    // At least one round per row, so the rotation puts every row in every position once.
    const connectRounds = Math.max(ROUNDS, ROWS.length)
    for (let round = 0; round < connectRounds; round++) {
      for (let i = 0; i < ROWS.length; i++) {
        const n = (i + round) % ROWS.length
        const row = ROWS[n]
        await apply(row.policy)
        if (row.argv[2] === NAMED_ADDRESS) {
          // Learned again each time it is used, as a workload would (the policy switches in between forget it).
          const q = await client([bin.dns_load, 'query', RESOLVER, '53', NAMED, '1', 'connected'])
          if (q.noerror !== 1) throw new Error(`learning ${NAMED} failed: ${JSON.stringify(q)}`)
        }
        const r = await client(row.argv)
        if (r[row.ok] !== r.calls || r.calls === 0) throw new Error(`${row.label}: not every call succeeded as expected: ${JSON.stringify(r)}`)
        rates[n].push(r.per_sec)
      }
    }

    const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
    // Other work on the host shows up here first: every extra wakeup the proxy adds waits for a CPU.
    const load = (l) => l.map((x) => x.toFixed(2)).join(' ')
    const lines = []
    lines.push(`# DNS through the proxy vs direct (pnpm bench:dns)`, '')
    lines.push(
      `${os.cpus().length} CPUs (${cpu}), kernel ${os.release()}, Node ${process.version}; ${ROUNDS} rounds, ` +
        `${fmt(QUERIES)} sequential queries per cell and round, unpinned (client, agent and stub share the CPUs); ` +
        'each cell is the median over rounds of that round\'s percentile.',
      '',
      `Load average (1, 5, 15 min) at the start: ${load(loadAtStart)}, at the end: ${load(os.loadavg())}.`,
      '',
    )
    lines.push('## 1. Latency of one DNS query (A, answered by a stub resolver in the same netns)', '')
    lines.push('| configuration | socket | p50 µs | p99 µs | added p50 µs | added p99 µs | p50 vs (a) | p99 vs (a) |')
    lines.push('|---|---|---:|---:|---:|---:|---:|---:|')
    for (const mode of MODES) {
      const base = lat[`a/${mode}`]
      const b50 = median(base.p50)
      const b99 = median(base.p99)
      for (const c of CONFIGS) {
        const cell = lat[`${c.key}/${mode}`]
        const p50 = median(cell.p50)
        const p99 = median(cell.p99)
        const baseline = c.key === 'a'
        lines.push(
          `| ${c.label} | ${mode === 'connected' ? 'one connected socket' : 'fresh socket per query'} | ${us(p50)} | ${us(p99)} | ` +
            `${baseline ? 'baseline' : signedUs(p50 - b50)} | ${baseline ? 'baseline' : signedUs(p99 - b99)} | ` +
            `${baseline ? '1.00x' : ratio(p50, b50)} | ${baseline ? '1.00x' : ratio(p99, b99)} |`,
        )
      }
    }
    lines.push('', '## 2. The cost of the steering on a connect (from the managed cgroup)', '')
    lines.push(`${connectRounds} rounds of ${SECONDS} s per row, rows rotated; calls/s is the median over rounds.`, '')
    lines.push('| connect | calls/s | ns per call | added ns per call | vs the first row of its group |')
    lines.push('|---|---:|---:|---:|---:|')
    for (const group of ['udp', 'tcp']) {
      const first = ROWS.findIndex((r) => r.group === group)
      const base = median(rates[first])
      ROWS.forEach((row, n) => {
        if (row.group !== group) return
        const rate = median(rates[n])
        lines.push(
          `| ${row.label} | ${fmt(rate)} | ${fmt(1e9 / rate)} | ${n === first ? 'baseline' : `${1e9 / rate - 1e9 / base >= 0 ? '+' : ''}${fmt(1e9 / rate - 1e9 / base)}`} | ` +
            `${n === first ? '1.00x' : ratio(rate, base)} |`,
        )
      })
    }
    console.log(lines.join('\n'))
  } catch (error) {
    failures.push(error)
  } finally {
    const errors = await iso.cleanup()
    for (const e of errors) console.error(`cleanup: ${e.message}`)
  }
  if (failures.length > 0) {
    for (const e of failures) console.error(e.stack ?? e)
    process.exit(1)
  }
}

await main()
