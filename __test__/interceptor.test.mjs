// Interceptor: option validation and the event transport (no privileges), then the issue's "Done when" as
// root: a workload in a managed cgroup (own cgroup under a test parent, own netns) reaches the broker and DNS,
// is refused elsewhere with EPERM, and every refusal arrives in events() with the right reason code.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, cgroup2Mount, isRoot, run, runIn } from '../bench/dataplane/isolation.mjs'
import { loadBenchAddon } from '../bench/dataplane/bench-addon.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const { Interceptor, ContractValidationError, DataplaneError, parseControlCommandPayload, parseDataplanePacketEvent } = require('../index.js')
const { decodeEventBatch } = require('../js/interceptor.js')
// benchEventBatch lives only in the addon built with the `bench` cargo feature (never in the package's binding).
const benchAddon = loadBenchAddon({ build: false })

const SPEC_ORDER = [
  'code_namespace', 'reason_code', 'verdict', 'would_block', 'hook', 'cgroup_id', 'protocol', 'dst_ip',
  'dst_port', 'pid', 'uid', 'comm', 'rule_id', 'dns_name', 'policy_generation', 'workload_id', 'observed_at',
]
// Every OBSERVE_* code (SPEC 2 appends more of them) carries would_block, no other code does.
const isObserve = (code) => code.startsWith('OBSERVE_')

function assertSpecShape(e) {
  const keys = Object.keys(e)
  const expected = SPEC_ORDER.filter((k) => keys.includes(k))
  assert.deepEqual(keys, expected, 'keys in SPEC 3 order')
  assert.equal(e.code_namespace, 'dataplane_verdict')
  assert.equal('would_block' in e, isObserve(e.reason_code), `would_block only for observe codes (${e.reason_code})`)
  assert.match(e.cgroup_id, /^\d+$/)
  assert.match(e.observed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/)
}

describe('Interceptor without privileges', () => {
  test('load() rejects unknown keys and bad values with every issue, before touching the kernel', async () => {
    await assert.rejects(
      Interceptor.load({ cgroupRoot: 'relative', failMode: 'ajar', ringBufferBytes: 12288, bogus: 1 }),
      (e) => {
        assert.ok(e instanceof ContractValidationError)
        assert.deepEqual(
          e.issues.map((i) => [i.path.join('.'), i.code]),
          [['', 'unrecognized_keys'], ['cgroupRoot', 'invalid_format'], ['failMode', 'invalid_value'], ['ringBufferBytes', 'invalid_value']],
        )
        return true
      },
    )
    await assert.rejects(Interceptor.load('x'), ContractValidationError)
  })

  test('load(): a heartbeat setting that can only flap is refused, naming both options', async () => {
    await assert.rejects(Interceptor.load({ heartbeatIntervalMs: 1000, heartbeatGraceMs: 400 }), (e) => {
      assert.ok(e instanceof ContractValidationError)
      assert.equal(e.issues.length, 1)
      assert.match(e.issues[0].message, /heartbeatIntervalMs.*heartbeatGraceMs/)
      return true
    })
    // Interval only: the default grace (5000 ms) must still be longer.
    await assert.rejects(Interceptor.load({ heartbeatIntervalMs: 5000 }), ContractValidationError)
    // Grace only, too short to derive a third of it.
    await assert.rejects(Interceptor.load({ heartbeatGraceMs: 2 }), (e) => e.issues[0].path[0] === 'heartbeatGraceMs')
  })

  test('the constructor is private', () => {
    assert.throws(() => new Interceptor(), TypeError)
  })

  test('DataplaneError: an Error with a stable code; a native failure arrives as one, code and message unchanged', async () => {
    const e = new DataplaneError('ERR_DATAPLANE_LOAD', 'the kernel rejected eBPF program dp_connect4: EACCES', { verifierLog: '0: R1=ctx' })
    assert.ok(e instanceof Error)
    assert.equal(e.name, 'DataplaneError')
    assert.equal(e.code, 'ERR_DATAPLANE_LOAD')
    assert.equal(e.verifierLog, '0: R1=ctx')
    assert.equal(String(e), 'DataplaneError: the kernel rejected eBPF program dp_connect4: EACCES')
    assert.ok(!('verifierLog' in new DataplaneError('ERR_DATAPLANE_CLOSED', 'the dataplane is closed')))
    const cause = new Error('inner')
    assert.equal(new DataplaneError('ERR_DATAPLANE_IO', 'x', { cause }).cause, cause)
    // A directory that is not a cgroup: refused by the Rust loader before anything is touched (no privileges needed).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ie-not-cgroup-'))
    try {
      await assert.rejects(Interceptor.load({ cgroupRoot: dir }), (err) => {
        assert.ok(err instanceof DataplaneError && err instanceof Error)
        assert.equal(err.code, 'ERR_DATAPLANE_NOT_CGROUP2')
        assert.equal(err.message, `${dir} is not a cgroup v2 directory`)
        assert.ok(!('verifierLog' in err))
        return true
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('load({signal}): an aborted signal rejects with its reason before anything loads; a non-signal is an issue', async () => {
    const reason = new Error('not now')
    await assert.rejects(Interceptor.load({ cgroupRoot: '/nonexistent', signal: AbortSignal.abort(reason) }), (e) => e === reason)
    await assert.rejects(Interceptor.load({ signal: AbortSignal.abort() }), (e) => e.name === 'AbortError')
    await assert.rejects(Interceptor.load({ signal: true }), (e) => {
      assert.ok(e instanceof ContractValidationError)
      assert.deepEqual(e.issues.map((i) => [i.path, i.code]), [[['signal'], 'invalid_type']])
      return true
    })
    // `signal` is taken out before Rust reads the options strictly: the other keys are still checked.
    await assert.rejects(Interceptor.load({ signal: new AbortController().signal, bogus: 1 }), (e) => {
      assert.ok(e instanceof ContractValidationError)
      assert.deepEqual(e.issues.map((i) => i.message), ['unrecognized key: `bogus`'])
      return true
    })
  })

  test('await using: [Symbol.asyncDispose] is close(), under Symbol.asyncDispose and Node.js\'s own key', () => {
    const dispose = Interceptor.prototype[Symbol.asyncDispose]
    assert.equal(typeof dispose, 'function')
    assert.equal(Interceptor.prototype[Symbol.for('nodejs.asyncDispose')], dispose)
    assert.ok(!Object.keys(Interceptor.prototype).length, 'not enumerable')
  })

  const benchSkip = benchAddon ? false : 'the bench transports are built only with the `bench` cargo feature: run `node bench/dataplane/bench-addon.mjs` first'
  test('every event transport decodes to the same objects in SPEC 3 key order', { skip: benchSkip }, () => {
    const [objects, json, packed] = ['objects', 'json', 'packed'].map((f) => decodeEventBatch(benchAddon.benchEventBatch(f, 300)))
    assert.equal(packed.length, 300)
    for (let i = 0; i < 300; i++) {
      assertSpecShape(packed[i])
      for (const other of [objects[i], json[i]]) {
        assert.deepEqual(Object.keys(other), Object.keys(packed[i]))
        for (const k of Object.keys(packed[i])) if (k !== 'observed_at') assert.equal(other[k], packed[i][k], k)
      }
    }
    assert.ok(packed.some((e) => e.would_block === false) && packed.some((e) => e.would_block === true))
    assert.ok(packed.some((e) => e.dst_ip?.includes(':')), 'IPv6 destinations present')
    // A refused socket has no destination: neither key is present (not undefined, not empty).
    const noDst = packed.filter((e) => !('dst_ip' in e))
    assert.ok(noDst.length > 0 && noDst.every((e) => !('dst_port' in e)), 'events without a destination')
    // SPEC 4b: a destination learned from a DNS answer carries its name, right after rule_id; others have no key.
    const named = packed.filter((e) => 'dns_name' in e)
    assert.ok(named.length > 0 && named.length < packed.length, 'events with and without dns_name')
    assert.ok(named.every((e) => /^api-\d\.example\.com$/.test(e.dns_name)))
    assert.ok(named.some((e) => 'rule_id' in e), 'dns_name beside rule_id')
  })
})

const rootSkip = isRoot() ? false : 'needs root (BPF, cgroups, network namespaces): run `sudo pnpm test`'

// CI (CI=true) runs as root on a BPF-capable kernel precisely to run the root tests: there a skip would hide a
// broken runner behind a green build, so it is a failure instead.
if (rootSkip && process.env.CI === 'true') {
  test('root tests run in CI', () => {
    assert.fail(`the root tests cannot run (${rootSkip}); CI=true is set, and CI must run them as root instead of skipping them`)
  })
}

describe('Interceptor as root: the Done-when of issue 3', { skip: rootSkip }, () => {
  const iso = new Isolation('ebpf-nodetest')
  let interceptor
  let netns
  let workload
  const events = []
  let consumer

  before(async () => {
    netns = iso.netns('ns')
    for (const a of ['10.77.0.10', '10.77.0.53', '10.77.0.98', '10.77.0.99']) run('ip', ['-n', netns, 'addr', 'add', `${a}/32`, 'dev', 'lo'])
    const parent = iso.cgroup('attach')
    workload = iso.cgroup('attach/workload')
    interceptor = await Interceptor.load({ cgroupRoot: parent, pinDir: iso.pinDir('pins') })
    iso.defer(() => interceptor.close({ detach: true }))
    const summary = await interceptor.replacePolicySnapshot({
      broker: [{ ip: '10.77.0.10', port: 8081 }],
      dns: [{ ip: '10.77.0.53' }],
      rules: [{ id: 'deny-99', action: 'deny', cidr: '10.77.0.99/32' }],
    })
    assert.equal(summary.ipv4Rules, 1)
    assert.equal(summary.brokerEndpoints, 1)
    const managed = interceptor.upsertManagedCgroup({ path: workload, workloadId: 'wl-test' })
    assert.match(managed.cgroupId, /^\d+$/)
    consumer = (async () => {
      for await (const e of interceptor.events()) events.push(e)
    })()
  })

  after(async () => {
    const errors = await iso.cleanup()
    if (consumer) await consumer
    assert.deepEqual(errors.map((e) => e.message), [])
    assert.ok(!run('ip', ['netns', 'list']).includes(netns), 'netns removed')
  })

  async function probe(proto, ip, port, ...commHex) {
    const r = await runIn(workload, netns, [process.execPath, path.join(here, 'interceptor-probe.mjs'), proto, ip, port, ...commHex])
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout)
  }

  async function eventFor(pid, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const e = events.find((x) => x.pid === pid)
      if (e) return e
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.fail(`no event for pid ${pid}; got ${JSON.stringify(events.map((e) => [e.pid, e.reason_code]))}`)
  }

  const cases = [
    ['broker over TCP is allowed', 'tcp', '10.77.0.10', 8081, 'ECONNREFUSED', 'ALLOW_BROKER', 'connect4'],
    ['DNS over UDP is allowed', 'udp', '10.77.0.53', 53, null, 'ALLOW_DNS', 'sendmsg4'],
    ['an explicitly denied destination is refused with EPERM', 'tcp', '10.77.0.99', 443, 'EPERM', 'DENY_EXPLICIT', 'connect4'],
    ['anything else is refused with EPERM (TCP)', 'tcp', '10.77.0.98', 443, 'EPERM', 'DENY_DEFAULT', 'connect4'],
    ['anything else is refused with EPERM (UDP send)', 'udp', '10.77.0.98', 9, 'EPERM', 'DENY_DEFAULT', 'sendmsg4'],
  ]
  for (const [name, proto, ip, port, errno, code, hook] of cases) {
    test(name, async () => {
      const r = await probe(proto, ip, port)
      assert.equal(r.errno, errno)
      const e = await eventFor(r.pid)
      assertSpecShape(e)
      assert.equal(e.reason_code, code)
      assert.equal(e.verdict, code.startsWith('DENY') ? 'deny' : 'allow')
      assert.equal(e.hook, hook)
      assert.equal(e.protocol, proto)
      assert.equal(e.dst_ip, ip)
      assert.equal(e.dst_port, port)
      assert.equal(e.workload_id, 'wl-test')
      assert.equal(e.rule_id, code === 'DENY_EXPLICIT' ? 'deny-99' : undefined)
      assert.equal(e.comm, 'node')
    })
  }

  test('a process name that is not UTF-8 arrives as at most 16 bytes the package itself accepts', async () => {
    // 15 bytes 0xff: each becomes a 3-byte U+FFFD, 45 bytes that the contract's 16-byte limit would refuse.
    const r = await probe('tcp', '10.77.0.98', 443, 'ff'.repeat(15))
    assert.equal(r.errno, 'EPERM')
    const e = await eventFor(r.pid)
    assert.ok(Buffer.byteLength(e.comm) <= 16, e.comm)
    assert.equal(e.comm, '\ufffd'.repeat(5))
    assert.deepEqual(parseDataplanePacketEvent(e), e)
  })

  test('observe mode lets the connect through and reports would_block', async () => {
    interceptor.setCgroupMode({ path: workload, mode: 'observe' })
    try {
      const r = await probe('tcp', '10.77.0.98', 443)
      assert.equal(r.errno, 'ECONNREFUSED')
      const e = await eventFor(r.pid)
      assertSpecShape(e)
      assert.equal(e.reason_code, 'OBSERVE_WOULD_DENY_DEFAULT')
      assert.equal(e.would_block, true)
    } finally {
      interceptor.setCgroupMode({ path: workload, mode: 'enforce' })
    }
  })

  test('status() counts what the kernel emitted and what reached JavaScript', () => {
    const s = interceptor.status()
    assert.deepEqual([...s.attachedHooks].sort(), ['connect4', 'connect6', 'sendmsg4', 'sendmsg6'])
    assert.equal(s.managedCgroups.length, 1)
    assert.equal(s.managedCgroups[0].workloadId, 'wl-test')
    assert.ok(s.eventsDelivered >= 6)
    assert.equal(s.droppedInKernel, 0)
    assert.equal(s.droppedInQueue, 0)
    assert.equal(s.degraded, false)
    // The kernel counts every verdict, also those without an event: at least one per emitted record.
    const counted = s.verdicts.reduce((sum, v) => sum + v.count, 0)
    assert.ok(counted >= s.eventsEmitted, `${counted} verdicts counted, ${s.eventsEmitted} events emitted`)
    for (const v of s.verdicts) assert.ok(Number.isSafeInteger(v.count) && v.count >= 1, JSON.stringify(v))
    assert.ok(s.verdicts.some((v) => v.reasonCode.startsWith('DENY_')), JSON.stringify(s.verdicts))
  })

  test('cgroup targets: what the control protocol refuses is refused here too; the root needs allowRoot', () => {
    const refusedByBoth = [{ id: '0' }, { id: '007' }, { id: '+7' }, { path: `${workload}//x` }, { path: `${workload}/../x` }]
    for (const target of refusedByBoth) {
      assert.throws(() => parseControlCommandPayload('UpsertManagedCgroup', target), ContractValidationError, JSON.stringify(target))
      assert.throws(() => interceptor.upsertManagedCgroup(target), ContractValidationError, JSON.stringify(target))
    }
    for (const workloadId of ['', 'a\nb', 'x'.repeat(64)]) {
      assert.throws(() => parseControlCommandPayload('UpsertManagedCgroup', { path: '/a', workloadId }), ContractValidationError)
      assert.throws(() => interceptor.upsertManagedCgroup({ path: workload, workloadId }), ContractValidationError)
    }
    for (const target of [{ id: 0 }, { path: '../escape' }, { path: 'a/' }, { path: workload, allowRoot: 'yes' }]) {
      assert.throws(() => interceptor.upsertManagedCgroup(target), ContractValidationError, JSON.stringify(target))
    }
    // The root cgroup, by path or id: every process of the host.
    for (const target of [{ path: cgroup2Mount() }, { id: '1' }, { id: 1 }]) {
      assert.throws(() => interceptor.upsertManagedCgroup(target), (e) => e.code === 'ERR_DATAPLANE_CGROUP_ROOT_REFUSED')
    }
    assert.equal(interceptor.status().managedCgroups.length, 1, 'nothing was added')
    // Explicitly allowed: the test's programs only see this test's cgroups, where the workload's own entry is nearer.
    const root = interceptor.upsertManagedCgroup({ id: '1', mode: 'observe', allowRoot: true })
    assert.equal(root.cgroupId, '1')
    assert.equal(interceptor.deleteManagedCgroup({ id: '1' }), true)
    assert.equal(interceptor.status().managedCgroups.length, 1)
  })

  test('events options: batchSize 1..65536, unknown keys refused, before anything is read', async () => {
    for (const options of [{ batchSize: 0 }, { batchSize: 65537 }, { batchSize: 1.5 }, { size: 8 }, 'x']) {
      assert.throws(() => interceptor.eventBatches(options), ContractValidationError, JSON.stringify(options))
      await assert.rejects(interceptor.events(options).next(), ContractValidationError)
    }
  })

  test('status() reports every bypass layer and the active ones', () => {
    const s = interceptor.status()
    assert.deepEqual(s.layers.map((l) => l.layer), ['sock_create', 'socket_create_lsm', 'egress', 'socket_storage'])
    for (const l of s.layers) {
      assert.ok(['active', 'disabled', 'unavailable'].includes(l.state), JSON.stringify(l))
      assert.equal(l.state === 'unavailable', typeof l.reason === 'string' && l.reason.length > 0, JSON.stringify(l))
    }
    assert.deepEqual(s.activeLayers, s.layers.filter((l) => l.state === 'active').map((l) => l.layer))
    assert.ok(s.activeLayers.includes('sock_create') && s.activeLayers.includes('egress'), JSON.stringify(s.layers))
    for (const k of ['socketsRefused', 'socketsWouldRefuse', 'packetsDropped', 'packetsWouldDrop', 'packetsJudged', 'marksWritten']) {
      assert.equal(typeof s.layerCounters[k], 'number', k)
    }
  })

  test('every events() iterator sees every event, and break unsubscribes', async () => {
    const seen = []
    let stop = false
    const second = (async () => {
      for await (const e of interceptor.events()) {
        seen.push(e)
        if (stop) break
      }
    })()
    // The second iterator subscribes on its first next(), off the JavaScript thread: probe until it has seen
    // three probes; each of them reached the first iterator too, identical.
    const pids = []
    const mine = () => seen.filter((e) => pids.includes(e.pid))
    for (let i = 0; i < 100 && mine().length < 3; i++) {
      pids.push((await probe('tcp', '10.77.0.98', 443)).pid)
      await new Promise((res) => setTimeout(res, 20))
    }
    assert.ok(mine().length >= 3, `the second iterator saw ${mine().length} probes`)
    for (const e of mine()) assert.deepEqual(await eventFor(e.pid), e)
    // One more event ends the second iterator with a break; the first one keeps going.
    stop = true
    await probe('tcp', '10.77.0.98', 443)
    await second
  })

  test('return() on eventBatches() ends its pending next() at once', async () => {
    const it = interceptor.eventBatches()
    const pending = it.next()
    await new Promise((res) => setTimeout(res, 50))
    await it.return()
    const timeout = new Promise((res) => setTimeout(() => res('still pending'), 2000))
    assert.deepEqual(await Promise.race([pending, timeout]), { value: undefined, done: true })
  })

  test('a bad snapshot is rejected whole and the active policy stays', async () => {
    await assert.rejects(interceptor.replacePolicySnapshot({ broker: [], dns: [], rules: [{ id: 'x', action: 'deny', cidr: '10.0.0.1/8' }] }), ContractValidationError)
    const r = await probe('tcp', '10.77.0.10', 8081)
    assert.equal(r.errno, 'ECONNREFUSED', 'broker still allowed by the old policy')
  })

  test('a failure of the dataplane is a DataplaneError with its code and message', () => {
    assert.throws(() => interceptor.setCgroupMode({ path: iso.cgroup('attach/unmanaged'), mode: 'observe' }), (e) => {
      assert.ok(e instanceof DataplaneError)
      assert.equal(e.code, 'ERR_DATAPLANE_NOT_MANAGED')
      assert.match(e.message, /^cgroup .*unmanaged is not managed$/)
      return true
    })
  })

  test('close() ends the events() iterator and detaches', async () => {
    await interceptor.close({ detach: true })
    await consumer
    assert.equal(interceptor.closed, true)
    assert.throws(() => interceptor.status(), (e) => e instanceof DataplaneError && e.code === 'ERR_DATAPLANE_CLOSED')
    const r = await probe('tcp', '10.77.0.98', 443)
    assert.equal(r.errno, 'ECONNREFUSED', 'no enforcement after detach')
  })
})

describe('Interceptor as root: heartbeatGraceMs alone never degrades a live dataplane', { skip: rootSkip }, () => {
  // The dataplane issue's example: with {heartbeatGraceMs: 400} the interval used to stay at its 1,000 ms
  // default, so a fail-closed workload was refused ~60% of the time between beats. Given only the grace, the
  // interval is now a third of it.
  test('fail closed, grace 400 ms: never degraded, connects to the broker never DENY_DEGRADED_FAIL_CLOSED', async () => {
    const iso = new Isolation('ebpf-hbtest')
    try {
      const netns = iso.netns('ns')
      run('ip', ['-n', netns, 'addr', 'add', '10.78.0.10/32', 'dev', 'lo'])
      const parent = iso.cgroup('attach')
      const workload = iso.cgroup('attach/workload')
      const interceptor = await Interceptor.load({
        cgroupRoot: parent,
        pinDir: iso.pinDir('pins'),
        failMode: 'closed',
        heartbeatGraceMs: 400,
      })
      iso.defer(() => interceptor.close({ detach: true }))
      assert.equal(interceptor.status().heartbeatGraceMs, 400)
      await interceptor.replacePolicySnapshot({ broker: [{ ip: '10.78.0.10', port: 8081 }], dns: [], rules: [] })
      interceptor.upsertManagedCgroup({ path: workload })
      const errnos = []
      let degraded = 0
      let samples = 0
      // 3 s is 7.5 grace periods: under the old 1,000 ms interval most samples and most connects were degraded.
      for (const deadline = Date.now() + 3000; Date.now() < deadline; ) {
        const probe = runIn(workload, netns, [process.execPath, path.join(here, 'interceptor-probe.mjs'), 'tcp', '10.78.0.10', 8081])
        while (true) {
          const done = await Promise.race([probe.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))])
          samples++
          if (interceptor.status().degraded) degraded++
          if (done) break
        }
        const r = await probe
        assert.equal(r.code, 0, r.stderr)
        errnos.push(JSON.parse(r.stdout).errno)
      }
      assert.ok(errnos.length >= 5, `${errnos.length} connects in 3 s`)
      assert.deepEqual([...new Set(errnos)], ['ECONNREFUSED'], 'every connect reached the broker address (nothing listens)')
      assert.equal(degraded, 0, `degraded in ${degraded} of ${samples} status samples`)
    } finally {
      const errors = await iso.cleanup()
      assert.deepEqual(errors.map((e) => e.message), [])
    }
  })
})

describe('Interceptor as root: AbortSignal and await using', { skip: rootSkip }, () => {
  const iso = new Isolation('ebpf-aborttest')
  let parent
  let pinDir
  let interceptor

  /** Loads, retrying while another load of the same pin dir is still under way; resolves with an adopter. */
  async function adopt() {
    const deadline = Date.now() + 30_000
    for (;;) {
      try {
        const adopted = await Interceptor.load({ cgroupRoot: parent, pinDir })
        if (adopted.status().adopted) return adopted
        await adopted.close({ detach: true })
        assert.fail('the pin dir held nothing to adopt: the aborted load was undone')
      } catch (error) {
        if (!(error instanceof DataplaneError) || Date.now() > deadline) throw error
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }

  before(() => {
    parent = iso.cgroup('attach')
    pinDir = iso.pinDir('pins')
  })

  after(async () => {
    const errors = await iso.cleanup()
    assert.deepEqual(errors.map((e) => e.message), [])
  })

  test('load() aborted while loading rejects at once; the load it cannot stop is left pinned for the next loader', async () => {
    const controller = new AbortController()
    const reason = new Error('stop loading')
    const loading = Interceptor.load({ cgroupRoot: parent, pinDir, signal: controller.signal })
    controller.abort(reason)
    await assert.rejects(loading, (e) => e === reason)
    // The load goes on off the JavaScript thread: wait for what it pins last (the sock_addr links) before
    // adopting, so the two loads do not race; adopt() retries while the state is still incomplete.
    const pins = ['dp_config', 'link_connect4', 'link_connect6', 'link_sendmsg4', 'link_sendmsg6']
    for (const deadline = Date.now() + 30_000; !pins.every((p) => fs.existsSync(path.join(pinDir, p))); ) {
      if (Date.now() > deadline) assert.fail(`the load under way never pinned its state: ${fs.readdirSync(pinDir)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    interceptor = await adopt()
    iso.defer(() => interceptor.close({ detach: true }))
  })

  test('replacePolicySnapshot({signal}): before the call nothing changes; once running it completes whole', async () => {
    const snapshot = (port) => ({ broker: [{ ip: '10.79.0.10', port }], dns: [], rules: [] })
    const before = interceptor.status().generation
    const reason = new Error('no policy today')
    await assert.rejects(interceptor.replacePolicySnapshot(snapshot(8081), { signal: AbortSignal.abort(reason) }), (e) => e === reason)
    assert.equal(interceptor.status().generation, before, 'an aborted call applies nothing')

    const controller = new AbortController()
    const replacing = interceptor.replacePolicySnapshot(snapshot(8082), { signal: controller.signal })
    controller.abort()
    await assert.rejects(replacing, (e) => e.name === 'AbortError')
    // The replacement was already on the libuv pool: it is atomic, and it completes.
    for (const deadline = Date.now() + 10_000; interceptor.status().generation === before; ) {
      if (Date.now() > deadline) assert.fail('the replacement under way never completed')
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(interceptor.status().generation, before + 1)

    const summary = await interceptor.replacePolicySnapshot(snapshot(8083), { signal: new AbortController().signal })
    assert.equal(summary.generation, before + 2)
    await assert.rejects(interceptor.replacePolicySnapshot(snapshot(8083), { signal: new AbortController().signal, dryRun: true }), (e) => {
      assert.ok(e instanceof ContractValidationError)
      assert.deepEqual(e.issues.map((i) => [i.code, i.message]), [['unrecognized_keys', 'unrecognized key: `dryRun`']])
      return true
    })
    await assert.rejects(interceptor.replacePolicySnapshot(snapshot(8083), 'signal'), ContractValidationError)
    assert.equal(interceptor.status().generation, before + 2)
  })

  test('events({signal}) and eventBatches({signal}): the pending next() rejects with the reason once, then the end', async () => {
    for (const iterate of [(o) => interceptor.events(o), (o) => interceptor.eventBatches(o)]) {
      const controller = new AbortController()
      const iterator = iterate({ batchSize: 16, signal: controller.signal })
      const pending = iterator.next()
      await new Promise((r) => setTimeout(r, 50))
      const reason = new Error('enough')
      controller.abort(reason)
      await assert.rejects(pending, (e) => e === reason)
      assert.deepEqual(await iterator.next(), { value: undefined, done: true })
    }
    // Aborted before the first next(): nothing is subscribed, the first next() reports the reason.
    const reason = new Error('never mind')
    const iterator = interceptor.eventBatches({ signal: AbortSignal.abort(reason) })
    await assert.rejects(iterator.next(), (e) => e === reason)
    assert.deepEqual(await iterator.next(), { value: undefined, done: true })
    assert.throws(() => interceptor.eventBatches({ signal: 1 }), ContractValidationError)
  })

  test('await using: leaving the scope closes without detaching, so the next loader adopts the pins', async () => {
    assert.equal(await interceptor[Symbol.asyncDispose](), undefined)
    assert.equal(interceptor.closed, true)
    assert.throws(() => interceptor.status(), (e) => e instanceof DataplaneError && e.code === 'ERR_DATAPLANE_CLOSED')
    await interceptor[Symbol.asyncDispose]()
    interceptor = await adopt()
  })
})
