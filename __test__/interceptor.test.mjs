// Interceptor: option validation and the event transport (no privileges), then the issue's "Done when" as
// root: a workload in a managed cgroup (own cgroup under a test parent, own netns) reaches the broker and DNS,
// is refused elsewhere with EPERM, and every refusal arrives in events() with the right reason code.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, isRoot, run, runIn } from '../bench/dataplane/isolation.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const { Interceptor, ContractValidationError } = require('../index.js')
const native = require('../binding.js')
const { decodeEventBatch } = require('../js/interceptor.js')

const SPEC_ORDER = [
  'code_namespace', 'reason_code', 'verdict', 'would_block', 'hook', 'cgroup_id', 'protocol', 'dst_ip',
  'dst_port', 'pid', 'uid', 'comm', 'rule_id', 'policy_generation', 'workload_id', 'observed_at',
]
const OBSERVE = new Set(['OBSERVE_WOULD_ALLOW', 'OBSERVE_WOULD_DENY_EXPLICIT', 'OBSERVE_WOULD_DENY_DEFAULT'])

function assertSpecShape(e) {
  const keys = Object.keys(e)
  const expected = SPEC_ORDER.filter((k) => keys.includes(k))
  assert.deepEqual(keys, expected, 'keys in SPEC 3 order')
  assert.equal(e.code_namespace, 'dataplane_verdict')
  assert.equal('would_block' in e, OBSERVE.has(e.reason_code), `would_block only for observe codes (${e.reason_code})`)
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

  test('the constructor is private', () => {
    assert.throws(() => new Interceptor(), TypeError)
  })

  test('every event transport decodes to the same objects in SPEC 3 key order', () => {
    const [objects, json, packed] = ['objects', 'json', 'packed'].map((f) => decodeEventBatch(native.benchEventBatch(f, 300)))
    assert.equal(packed.length, 300)
    for (let i = 0; i < 300; i++) {
      assertSpecShape(packed[i])
      for (const other of [objects[i], json[i]]) {
        assert.deepEqual(Object.keys(other), Object.keys(packed[i]))
        for (const k of Object.keys(packed[i])) if (k !== 'observed_at') assert.equal(other[k], packed[i][k], k)
      }
    }
    assert.ok(packed.some((e) => e.would_block === false) && packed.some((e) => e.would_block === true))
    assert.ok(packed.some((e) => e.dst_ip.includes(':')), 'IPv6 destinations present')
  })
})

const rootSkip = isRoot() ? false : 'needs root (BPF, cgroups, network namespaces): run `sudo pnpm test`'

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

  async function probe(proto, ip, port) {
    const r = await runIn(workload, netns, [process.execPath, path.join(here, 'interceptor-probe.mjs'), proto, ip, port])
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

  test('close() ends the events() iterator and detaches', async () => {
    await interceptor.close({ detach: true })
    await consumer
    assert.equal(interceptor.closed, true)
    assert.throws(() => interceptor.status(), (e) => e.code === 'ERR_DATAPLANE_CLOSED')
    const r = await probe('tcp', '10.77.0.98', 443)
    assert.equal(r.errno, 'ECONNREFUSED', 'no enforcement after detach')
  })
})
