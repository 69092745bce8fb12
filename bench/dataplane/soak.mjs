// `pnpm soak:dataplane` (root only): the dataplane under a steady load for SOAK_SECONDS (default 300), with
// events flowing into a JavaScript `for await` consumer, a policy replacement every second and a managed-cgroup
// change every 5 s. Every 10 s it samples the process RSS and the V8 heap; at the end it prints the samples and
// compares the last minute with the first minute after warm-up (the first 30 s). The criterion is the native
// memory, RSS minus the V8 heap's reserved size: V8 sizes its heap by its own policy (it may grow it by 16 MiB
// in one step under this event churn while the live objects stay at ~10 MiB), and that is not the dataplane's
// memory. It fails (exit 1) when native memory grew by more than SOAK_RSS_LIMIT_MB (default 16), when the V8
// heap's live size grew by more than that, or when an event went missing without being counted.
//
// The load: a generator in a managed cgroup alternates 10 s chunks of UDP sendto() on one socket to an allowed
// destination (every verdict an ALLOW_EXPLICIT event: allowOneIn is 1) and TCP connect() to a denied one
// (every verdict a DENY_DEFAULT event). Everything runs in a network namespace and cgroups this script creates
// and removes (bench/dataplane/isolation.mjs).

import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, isRoot, runIn } from './isolation.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const { Interceptor } = require(path.join(here, '../../index.js'))

const SECONDS = Number(process.env.SOAK_SECONDS ?? 300)
const RSS_LIMIT_MB = Number(process.env.SOAK_RSS_LIMIT_MB ?? 16)
const WARMUP_S = 30
const CHUNK_S = 10
const ALLOWED = '127.0.0.1'
const DENIED = '127.0.0.2'

const mb = (bytes) => (bytes / (1 << 20)).toFixed(1)
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function policy(generation) {
  // Two layouts in turn, both allowing the target and leaving DENIED default-denied.
  const rules = [{ id: `target-${generation % 2}`, action: 'allow', cidr: `${ALLOWED}/32` }]
  for (let i = 0; i < (generation % 2 ? 1000 : 10); i++) {
    rules.push({ id: `r${i}`, action: i % 2 ? 'deny' : 'allow', cidr: `10.${(i >> 8) & 255}.${i & 255}.1/32`, ports: [443] })
  }
  return { broker: [{ ip: '10.255.255.1', port: 8081 }], dns: [{ ip: '10.255.255.53' }], rules, sampling: { allowOneIn: 1, unmanagedOneIn: 0 } }
}

async function main() {
  if (!isRoot()) {
    console.log('The soak needs root (BPF, cgroups, network namespaces): run `sudo pnpm soak:dataplane`.')
    process.exitCode = 1
    return
  }
  const iso = new Isolation('ebpf-soak')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpf-soak-'))
  iso.defer(() => fs.rmSync(tmp, { recursive: true, force: true }))
  let interceptor = null
  try {
    const gen = path.join(tmp, 'connect_rate')
    execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-o', gen, path.join(here, 'connect_rate.c')], { stdio: 'inherit' })
    const ns = iso.netns('ns')
    const attach = iso.cgroup('dp')
    const work = iso.cgroup('dp/work')
    const spare = iso.cgroup('dp/spare')
    interceptor = await Interceptor.load({ cgroupRoot: attach, pinDir: iso.pinDir('dp'), ringBufferBytes: 16 << 20 })
    await interceptor.replacePolicySnapshot(policy(0))
    interceptor.upsertManagedCgroup({ path: work, workloadId: 'soak' })

    // Besides one event per connect()/sendto() (hooks connect4 / sendmsg4), the egress backstop judges the next
    // packet of the UDP flow once after each replacement (the socket's mark names the old generation) and reports
    // that allow too (allowOneIn is 1): those events are counted apart.
    let delivered = 0
    let egressDelivered = 0
    let unexpected = 0
    const consumer = (async () => {
      for await (const e of interceptor.events({ batchSize: 8192 })) {
        delivered++
        if (e.hook === 'egress') egressDelivered++
        if (e.reason_code !== (e.dst_ip === DENIED ? 'DENY_DEFAULT' : 'ALLOW_EXPLICIT')) unexpected++
      }
    })()

    const started = Date.now()
    const elapsed = () => (Date.now() - started) / 1000
    let verdicts = 0
    let replacements = 0
    let managedChanges = 0
    const generator = (async () => {
      for (let chunk = 0; elapsed() < SECONDS - 1; chunk++) {
        const [mode, ip] = chunk % 2 ? ['tcp', DENIED] : ['udpsend', ALLOWED]
        const ms = Math.max(1000, Math.min(CHUNK_S, SECONDS - elapsed()) * 1000)
        const r = await runIn(work, ns, [gen, mode, ip, mode === 'tcp' ? 7000 : 7001, Math.round(ms), 1])
        if (r.code !== 0) throw new Error(`generator failed: ${r.stderr}`)
        const out = JSON.parse(r.stdout)
        verdicts += out.calls
      }
    })()
    const changer = (async () => {
      while (elapsed() < SECONDS) {
        await new Promise((res) => setTimeout(res, 1000))
        await interceptor.replacePolicySnapshot(policy(++replacements))
        if (replacements % 5 === 0) {
          interceptor.upsertManagedCgroup({ path: spare, mode: replacements % 10 ? 'observe' : 'enforce' })
          managedChanges++
        }
      }
    })()

    const samples = []
    const sample = () => {
      const s = interceptor.status()
      const m = process.memoryUsage()
      samples.push({ t: elapsed(), rss: m.rss, heap: m.heapUsed, heapTotal: m.heapTotal, external: m.external, delivered, emitted: s.eventsEmitted, dk: s.droppedInKernel, dq: s.droppedInQueue })
    }
    sample()
    while (elapsed() < SECONDS) {
      await new Promise((res) => setTimeout(res, 10_000))
      sample()
      const last = samples.at(-1)
      console.error(`t=${last.t.toFixed(0)} s rss=${mb(last.rss)} MiB delivered=${last.delivered} emitted=${last.emitted} dropped kernel/queue=${last.dk}/${last.dq}`)
    }
    await Promise.all([generator, changer])
    // Drain: wait until every emitted event is delivered or counted, at most 10 s.
    for (let i = 0; i < 100; i++) {
      const s = interceptor.status()
      if (delivered + s.droppedInQueue >= s.eventsEmitted) break
      await new Promise((res) => setTimeout(res, 100))
    }
    const final = interceptor.status()
    await interceptor.close({ detach: true })
    interceptor = null
    await consumer

    const window = (from, to, f) => samples.filter((s) => s.t >= from && s.t < to).map(f)
    const native = (s) => s.rss - s.heapTotal
    const early = window(WARMUP_S, WARMUP_S + 60, (s) => s.rss)
    const late = window(SECONDS - 60, Infinity, (s) => s.rss)
    const growth = median(late) - median(early)
    const nativeGrowth = median(window(SECONDS - 60, Infinity, native)) - median(window(WARMUP_S, WARMUP_S + 60, native))
    const heapGrowth = median(window(SECONDS - 60, Infinity, (s) => s.heap)) - median(window(WARMUP_S, WARMUP_S + 60, (s) => s.heap))
    // Every connect()/sendto() verdict is delivered or counted as dropped (the drop counters also count egress
    // events, so with drops this can only go negative), and every event the kernel emitted is delivered or counted.
    const lost = verdicts - (delivered - egressDelivered) - final.droppedInKernel - final.droppedInQueue
    const lostAfterKernel = final.eventsEmitted - delivered - final.droppedInQueue
    const lines = [
      `Soak: ${SECONDS} s, ${verdicts.toLocaleString('en-US')} verdicts (UDP sendto allowed / TCP connect denied, 10 s chunks), ${replacements} replacements, ${managedChanges} managed-cgroup changes, ${os.cpus().length} CPUs, kernel ${os.release()}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`,
      '',
      '| t (s) | RSS (MiB) | V8 heap used / total (MiB) | external (MiB) | events delivered | events emitted | dropped in kernel | dropped in queue |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...samples.map((s) => `| ${s.t.toFixed(0)} | ${mb(s.rss)} | ${mb(s.heap)} / ${mb(s.heapTotal)} | ${mb(s.external)} | ${s.delivered.toLocaleString('en-US')} | ${s.emitted.toLocaleString('en-US')} | ${s.dk.toLocaleString('en-US')} | ${s.dq.toLocaleString('en-US')} |`),
      '',
      `RSS, median of the first minute after ${WARMUP_S} s warm-up: ${mb(median(early))} MiB; median of the last minute: ${mb(median(late))} MiB; growth ${mb(growth)} MiB`,
      `Native memory (RSS - V8 heap total), the same medians: growth ${mb(nativeGrowth)} MiB (limit ${RSS_LIMIT_MB} MiB); V8 heap used: growth ${mb(heapGrowth)} MiB (limit ${RSS_LIMIT_MB} MiB)`,
      `Events: connect()/sendto() verdicts ${verdicts.toLocaleString('en-US')} = delivered ${(delivered - egressDelivered).toLocaleString('en-US')} + dropped in kernel ${final.droppedInKernel.toLocaleString('en-US')} + dropped in queue ${final.droppedInQueue.toLocaleString('en-US')} + uncounted ${lost.toLocaleString('en-US')}; events with an unexpected reason: ${unexpected}`,
      `Egress events (a flow's packet judged again after a replacement or a managed-cgroup change): ${egressDelivered.toLocaleString('en-US')}; emitted by the kernel ${final.eventsEmitted.toLocaleString('en-US')} - delivered ${delivered.toLocaleString('en-US')} - dropped in queue ${final.droppedInQueue.toLocaleString('en-US')} = ${lostAfterKernel}`,
    ]
    console.log(lines.join('\n'))
    const limit = RSS_LIMIT_MB * (1 << 20)
    const lostUncounted = final.droppedInKernel + final.droppedInQueue === 0 ? lost !== 0 : lost > 0
    if (nativeGrowth > limit || heapGrowth > limit || lostUncounted || lostAfterKernel !== 0 || unexpected !== 0) process.exitCode = 1
  } finally {
    if (interceptor) await interceptor.close({ detach: true }).catch((e) => console.error(`close: ${e.message}`))
    for (const e of await iso.cleanup()) console.error(`cleanup: ${e.message}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
