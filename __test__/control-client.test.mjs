// ControlClient: against scripted servers (no privileges: framing, id matching, timeouts, bad replies,
// refusals), and as root against the real agent binary (every command, events from a workload in its own
// cgroup and netns, a refusal for another uid, shutdown). The `interceptor-ebpf` bin shim is tested too.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

import { Isolation, cgroup2Mount, isRoot, run, runIn } from '../bench/dataplane/isolation.mjs'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.join(here, '..')
const { ControlClient, ControlClientError, ControlProtocolRequestError, ContractValidationError, parseEbpfInterceptorConfig } =
  require('../index.js')
const { resolveBinary } = require('../bin/interceptor-ebpf.js')

function tempDir(tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ie-cc-${tag}-`))
  fs.chmodSync(dir, 0o755)
  return dir
}

/**
 * A Unix-socket server that answers each request line with `respond(request, socket)`; `connections` counts the
 * connections it accepted, `closed` those that have ended since.
 */
async function scriptedServer(respond) {
  const dir = tempDir('fake')
  const socketPath = path.join(dir, 's.sock')
  const counts = { connections: 0, closed: 0 }
  const server = net.createServer((socket) => {
    counts.connections++
    socket.on('close', () => counts.closed++)
    let buffered = ''
    socket.on('data', (chunk) => {
      buffered += chunk
      let nl
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        respond(JSON.parse(line), socket)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise((resolve) => server.listen(socketPath, resolve))
  return {
    socketPath,
    counts,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          fs.rmSync(dir, { recursive: true, force: true })
          resolve()
        })
      }),
  }
}

const health = (id) => JSON.stringify({ ok: true, command: 'GetHealth', data: { status: 'ok', degradedReasons: [] }, id }) + '\n'

/** Resolves once `predicate()` holds; fails after `ms`. */
async function waitFor(predicate, what, ms = 5000) {
  for (const deadline = Date.now() + ms; !predicate(); ) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('ControlClient against scripted servers', () => {
  test('replies are matched to requests, even split across writes and pipelined', async () => {
    const server = await scriptedServer((req, socket) => {
      const line = req.command === 'GetHealth' ? health(req.id) : JSON.stringify({ ok: true, command: req.command, data: { globalMode: req.payload.mode }, id: req.id }) + '\n'
      // One byte at a time for the health reply: the client must reassemble lines.
      if (req.command === 'GetHealth') for (const c of line) socket.write(c)
      else socket.write(line)
    })
    const client = await ControlClient.connect(server.socketPath)
    const [h, m, h2] = await Promise.all([client.getHealth(), client.setGlobalMode('observe'), client.getHealth()])
    assert.deepEqual(h, { status: 'ok', degradedReasons: [] })
    assert.deepEqual(m, { globalMode: 'observe' })
    assert.deepEqual(h2, h)
    client.close()
    await assert.rejects(client.getHealth(), (e) => e instanceof ControlClientError && e.code === 'ERR_CONTROL_CLOSED')
    await server.close()
  })

  test('getDnsStatus sends GetDnsStatus without a payload and returns the strict data', async () => {
    const data = {
      serving: false,
      listen: [],
      reason: 'no fqdn rule in the policy',
      dnsQueries: 'any',
      learned: [],
      counters: { queries: 0, refused: 0, wouldRefuse: 0, learnedAddresses: 0, upstreamFailures: 0 },
    }
    const seen = []
    const server = await scriptedServer((req, socket) => {
      seen.push(req)
      socket.write(JSON.stringify({ ok: true, command: 'GetDnsStatus', data, id: req.id }) + '\n')
    })
    const client = await ControlClient.connect(server.socketPath)
    assert.deepEqual(await client.getDnsStatus(), data)
    assert.equal(seen[0].command, 'GetDnsStatus')
    assert.equal('payload' in seen[0], false)
    // `reason` while serving breaks the data schema: the client refuses the reply.
    const bad = await scriptedServer((req, socket) => {
      socket.write(JSON.stringify({ ok: true, command: 'GetDnsStatus', data: { ...data, serving: true }, id: req.id }) + '\n')
    })
    const badClient = await ControlClient.connect(bad.socketPath)
    await assert.rejects(badClient.getDnsStatus(), (e) => e instanceof ControlClientError)
    client.close()
    badClient.close()
    await server.close()
    await bad.close()
  })

  test('a refusal carries the reason code and the whole control error', async () => {
    const server = await scriptedServer((req, socket) => {
      socket.write(
        JSON.stringify({
          ok: false,
          error: { code_namespace: 'control_authz', reason_code: 'CTRL_AUTH_PEERCRED_REJECTED_UID', message: 'peer uid 7 is not authorized', command: req.command },
          id: req.id,
        }) + '\n',
      )
    })
    const client = await ControlClient.connect(server.socketPath)
    await assert.rejects(client.shutdown(), (e) => {
      assert.ok(e instanceof ControlClientError)
      assert.equal(e.code, 'ERR_CONTROL_REFUSED')
      assert.equal(e.reason_code, 'CTRL_AUTH_PEERCRED_REJECTED_UID')
      assert.equal(e.controlError.command, 'Shutdown')
      assert.equal(e.command, 'Shutdown')
      assert.equal(e.requestId, '1')
      return true
    })
    client.close()
    await server.close()
  })

  test('an invalid payload is refused before it is sent, with the code the agent would use', async () => {
    let received = 0
    const server = await scriptedServer(() => received++)
    const client = await ControlClient.connect(server.socketPath)
    await assert.rejects(client.setGlobalMode('audit'), (e) => {
      assert.ok(e instanceof ControlProtocolRequestError)
      assert.ok(e instanceof ContractValidationError)
      assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_PAYLOAD_INVALID')
      assert.deepEqual(e.issues[0].path, ['payload', 'mode'])
      return true
    })
    await assert.rejects(client.upsertManagedCgroup({ path: 'relative' }), ControlProtocolRequestError)
    await assert.rejects(client.replacePolicySnapshot({ broker: [], dns: [], rules: [{ id: 'x', action: 'allow', cidr: '10.0.0.1/8' }] }), ControlProtocolRequestError)
    assert.equal(received, 0)
    client.close()
    await server.close()
  })

  test("reply lines are framed by the agent's own limit: 16 MiB, read from the addon", async () => {
    const limit = 16 * 1024 * 1024
    assert.equal(require('../binding.js').MAX_CONTROL_LINE_BYTES, limit, 'SPEC 3: at most 16 MiB per line')
    // The same valid reply, padded with JSON whitespace to exactly the limit, then to one byte more.
    const padded = (id, bytes) => {
      const line = health(id).trimEnd()
      return line.slice(0, -1) + ' '.repeat(bytes - line.length) + '}\n'
    }
    const server = await scriptedServer((req, socket) => socket.write(padded(req.id, req.id === '1' ? limit : limit + 1)))
    const client = await ControlClient.connect(server.socketPath, { timeoutMs: 5000 })
    try {
      assert.deepEqual(await client.getHealth(), { status: 'ok', degradedReasons: [] })
      await assert.rejects(client.getHealth(), (e) => {
        assert.equal(e.code, 'ERR_CONTROL_BAD_RESPONSE')
        assert.equal(e.message, `a reply line exceeds ${limit} bytes`)
        return true
      })
    } finally {
      client.close()
      await server.close()
    }
  })

  test('timeouts, bad replies and missing agents have their own codes', async () => {
    const silent = await scriptedServer(() => {})
    const client = await ControlClient.connect(silent.socketPath, { timeoutMs: 200 })
    const t = Date.now()
    await assert.rejects(client.getStatus(), (e) => e.code === 'ERR_CONTROL_TIMEOUT' && e.command === 'GetStatus')
    assert.ok(Date.now() - t >= 190)
    await assert.rejects(client.getStatus({ timeoutMs: 0 }), ContractValidationError)
    client.close()
    await silent.close()

    const liar = await scriptedServer((req, socket) => {
      // A success for another command, then a reply with a key the schema does not allow.
      if (req.command === 'GetStatus') socket.write(health(req.id))
      else socket.write(JSON.stringify({ ok: true, command: 'GetHealth', data: { status: 'ok', degradedReasons: [], uptime: 1 }, id: req.id }) + '\n')
    })
    const c2 = await ControlClient.connect(liar.socketPath)
    await assert.rejects(c2.getStatus(), (e) => e.code === 'ERR_CONTROL_BAD_RESPONSE' && e.issues.length > 0)
    await assert.rejects(c2.getHealth(), (e) => e.code === 'ERR_CONTROL_BAD_RESPONSE' && /uptime/.test(e.message))
    c2.close()
    await liar.close()

    await assert.rejects(ControlClient.connect('/nonexistent/agentd.sock'), (e) => e.code === 'ERR_CONTROL_CONNECTION')
  })

  test('a request written to a connection the agent had already closed is sent again on a new one', async () => {
    // The agent closes an idle connection; a call made before the client has seen that close writes into a
    // closed socket (EPIPE): the agent never read it, so the client sends it once more on a fresh connection.
    // Here the server closes right after each reply, and the next call is made in the same tick as the reply.
    let requests = 0
    const server = await scriptedServer((req, socket) => {
      requests++
      socket.end(health(req.id))
      socket.destroy()
    })
    const client = await ControlClient.connect(server.socketPath, { timeoutMs: 2000 })
    try {
      for (let i = 0; i < 5; i++) assert.equal((await client.getHealth()).status, 'ok')
      assert.equal(requests, 5, 'each call reached the server once')
    } finally {
      client.close()
      await server.close()
    }
  })

  test('a connection the agent closed is reopened on the next call', async () => {
    let connections = 0
    const server = await scriptedServer((req, socket) => {
      socket.end(health(req.id))
    })
    const client = await ControlClient.connect(server.socketPath)
    for (let i = 0; i < 3; i++) {
      assert.equal((await client.getHealth()).status, 'ok')
      await new Promise((r) => setTimeout(r, 20))
      connections++
    }
    assert.equal(connections, 3)
    client.close()
    await server.close()
  })
})

describe('ControlClient: the socket of ctl, AbortSignal, await using, error classes', () => {
  const ENV = 'BROKER_EBPF_CONTROL_SOCKET'
  const DEFAULT_SOCKET = parseEbpfInterceptorConfig().controlSocketPath

  /** Runs `fn` with the variable set to `value` (`undefined`: unset), then restores it. */
  async function withEnv(value, fn) {
    const saved = process.env[ENV]
    if (value === undefined) delete process.env[ENV]
    else process.env[ENV] = value
    try {
      return await fn()
    } finally {
      if (saved === undefined) delete process.env[ENV]
      else process.env[ENV] = saved
    }
  }

  test('connect() without a path takes BROKER_EBPF_CONTROL_SOCKET as ctl does; a given path wins; empty is unset', async () => {
    const server = await scriptedServer((req, socket) => socket.write(health(req.id)))
    try {
      await withEnv(server.socketPath, async () => {
        for (const args of [[], [undefined], [null, { timeoutMs: 2000 }]]) {
          const client = await ControlClient.connect(...args)
          assert.equal(client.socketPath, server.socketPath, `connect(${args.map(String)})`)
          assert.equal((await client.getHealth()).status, 'ok')
          client.close()
        }
      })
      await withEnv('/nonexistent/env.sock', async () => {
        // ctl --socket beats the variable; so does the argument.
        const client = await ControlClient.connect(server.socketPath)
        assert.equal(client.socketPath, server.socketPath)
        client.close()
        await assert.rejects(ControlClient.connect(), (e) => {
          assert.ok(e instanceof ControlClientError)
          assert.equal(e.code, 'ERR_CONTROL_CONNECTION')
          assert.match(e.message, /at \/nonexistent\/env\.sock:/)
          return true
        })
      })
      // Unset or empty: the default path. An agent may listen there on this machine, so either outcome names it.
      for (const value of [undefined, '']) {
        await withEnv(value, async () => {
          const outcome = await ControlClient.connect(undefined, { timeoutMs: 1000 }).then(
            (c) => {
              c.close()
              return c.socketPath
            },
            (e) => e.message,
          )
          assert.ok(outcome === DEFAULT_SOCKET || outcome.includes(` ${DEFAULT_SOCKET}`), `${JSON.stringify(value)}: ${outcome}`)
        })
      }
      await assert.rejects(ControlClient.connect(''), (e) => e instanceof ContractValidationError && e.issues[0].path[0] === 'socketPath')
    } finally {
      await server.close()
    }
  })

  test('an aborted call rejects with the signal reason; before it is written nothing is sent', async () => {
    const seen = []
    const server = await scriptedServer((req, socket) => {
      seen.push(req.command)
      socket.write(health(req.id))
    })
    const client = await ControlClient.connect(server.socketPath)
    try {
      const reason = new Error('the caller gave up')
      const aborted = AbortSignal.abort(reason)
      await assert.rejects(client.getHealth({ signal: aborted }), (e) => e === reason)
      await assert.rejects(client.setGlobalMode('observe', { signal: AbortSignal.abort() }), (e) => {
        assert.equal(e.name, 'AbortError')
        return true
      })
      await assert.rejects(client.shutdown({ detach: true }, { signal: aborted }), (e) => e === reason)
      const stream = client.subscribeEvents({ signal: aborted })
      await assert.rejects(stream.next(), (e) => e === reason)
      assert.deepEqual(await stream.next(), { value: undefined, done: true }, 'the reason is reported once')
      await assert.rejects(ControlClient.connect(server.socketPath, { signal: aborted }), (e) => e === reason)
      // Not a signal: refused before anything is sent, like a bad timeoutMs.
      await assert.rejects(client.getHealth({ signal: 'stop' }), (e) => {
        assert.ok(e instanceof ContractValidationError)
        assert.deepEqual(e.issues.map((i) => [i.path, i.code]), [[['signal'], 'invalid_type']])
        return true
      })
      assert.throws(() => client.subscribeEvents({ signal: {} }), ContractValidationError)
      // The client is still usable, and only this request ever reached the server, on the first connection.
      assert.equal((await client.getHealth({ signal: new AbortController().signal })).status, 'ok')
      assert.deepEqual(seen, ['GetHealth'])
      assert.equal(server.counts.connections, 1, 'no connection for the aborted stream or connect')
    } finally {
      client.close()
      await server.close()
    }
  })

  test('a request already written cannot be unsent: the call rejects at once, its reply is dropped, the connection keeps its order', async () => {
    const seen = []
    let heldReply = null
    const server = await scriptedServer((req, socket) => {
      seen.push(req.command)
      const reply = (data) => JSON.stringify({ ok: true, command: req.command, data, id: req.id }) + '\n'
      if (req.command === 'SetGlobalMode') {
        // The agent is slow with this one; it answers when the next request comes, in order.
        heldReply = () => socket.write(reply({ globalMode: req.payload.mode }))
        return
      }
      heldReply?.()
      heldReply = null
      socket.write(health(req.id))
    })
    const client = await ControlClient.connect(server.socketPath, { timeoutMs: 10_000 })
    try {
      const controller = new AbortController()
      const pending = client.setGlobalMode('observe', { signal: controller.signal })
      await waitFor(() => seen.length === 1, 'the request to reach the server')
      const abortedAt = Date.now()
      controller.abort()
      await assert.rejects(pending, (e) => e.name === 'AbortError')
      assert.ok(Date.now() - abortedAt < 2000, 'rejected at the abort, not at the 10 s timeout')
      // The agent got it (a mutation may have taken effect): the late reply is read and dropped, so the next call on
      // the same connection gets its own reply, not that one.
      assert.deepEqual(await client.getHealth(), { status: 'ok', degradedReasons: [] })
      assert.deepEqual(seen, ['SetGlobalMode', 'GetHealth'])
      assert.equal(server.counts.connections, 1)
      // Aborting after the reply came changes nothing.
      const late = new AbortController()
      assert.equal((await client.getHealth({ signal: late.signal })).status, 'ok')
      late.abort()
      assert.equal((await client.getHealth()).status, 'ok')
    } finally {
      client.close()
      await server.close()
    }
  })

  test('connect({signal}) aborted while connecting closes the half-open socket', async () => {
    const server = await scriptedServer(() => {})
    try {
      const controller = new AbortController()
      const connecting = ControlClient.connect(server.socketPath, { signal: controller.signal })
      const reason = new Error('stop connecting')
      controller.abort(reason)
      await assert.rejects(connecting, (e) => e === reason)
      await waitFor(() => server.counts.closed === server.counts.connections, 'every accepted connection to close')
    } finally {
      await server.close()
    }
  })

  test('subscribeEvents({signal}): the abort closes the stream, the pending next() rejects once with the reason', async () => {
    const event = { code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'deny', hook: 'connect4' }
    const server = await scriptedServer((req, socket) => {
      socket.write(JSON.stringify({ ok: true, command: 'SubscribeEvents', id: req.id }) + '\n')
      socket.write(JSON.stringify(event) + '\n')
    })
    const client = await ControlClient.connect(server.socketPath)
    try {
      const controller = new AbortController()
      const stream = client.subscribeEvents({ signal: controller.signal })
      assert.deepEqual(await stream.next(), { value: event, done: false })
      const pending = stream.next()
      const reason = new Error('enough events')
      controller.abort(reason)
      await assert.rejects(pending, (e) => e === reason)
      assert.deepEqual(await stream.next(), { value: undefined, done: true })
      // The stream's own connection is closed; the client's request connection stays open.
      await waitFor(() => server.counts.closed === 1, "the stream's connection to close")
      assert.equal(server.counts.connections, 2)
    } finally {
      client.close()
      await server.close()
    }
  })

  test('await using: [Symbol.asyncDispose]() closes the client, its pending calls and its streams', async () => {
    const server = await scriptedServer((req, socket) => {
      if (req.command === 'SubscribeEvents') socket.write(JSON.stringify({ ok: true, command: 'SubscribeEvents', id: req.id }) + '\n')
    })
    const client = await ControlClient.connect(server.socketPath)
    // Node 20 defines Symbol.asyncDispose as Symbol.for('nodejs.asyncDispose'); both keys name the method.
    assert.equal(typeof client[Symbol.asyncDispose], 'function')
    assert.equal(client[Symbol.for('nodejs.asyncDispose')], client[Symbol.asyncDispose])
    const pending = client.getStatus()
    const stream = client.subscribeEvents()
    const next = stream.next()
    await waitFor(() => server.counts.connections === 2, 'the stream to connect')
    assert.equal(await client[Symbol.asyncDispose](), undefined)
    await assert.rejects(pending, (e) => e instanceof ControlClientError && e.code === 'ERR_CONTROL_CLOSED')
    assert.deepEqual(await next, { value: undefined, done: true })
    await assert.rejects(client.getHealth(), (e) => e.code === 'ERR_CONTROL_CLOSED')
    await waitFor(() => server.counts.closed === 2, 'both connections to close')
    await client[Symbol.asyncDispose]()
    await server.close()
  })

  test('ControlClientError: an Error with its code, message and details', () => {
    const e = new ControlClientError('ERR_CONTROL_TIMEOUT', 'no reply to GetStatus within 5 ms', { command: 'GetStatus', requestId: '7' })
    assert.ok(e instanceof Error)
    assert.equal(e.name, 'ControlClientError')
    assert.equal(e.code, 'ERR_CONTROL_TIMEOUT')
    assert.equal(e.message, 'no reply to GetStatus within 5 ms')
    assert.equal(e.command, 'GetStatus')
    assert.equal(e.requestId, '7')
    assert.equal(String(e), 'ControlClientError: no reply to GetStatus within 5 ms')
  })
})

describe('the interceptor-ebpf bin shim', () => {
  test('runs the native binary with the same arguments and exit code', () => {
    const found = resolveBinary()
    assert.ok(found.path, found.error)
    const r = spawnSync(process.execPath, [path.join(root, 'bin', 'interceptor-ebpf.js'), '--version'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /^interceptor-ebpf \d+\.\d+\.\d+/)
    const bad = spawnSync(process.execPath, [path.join(root, 'bin', 'interceptor-ebpf.js'), 'ctl', '--socket', '/nonexistent', 'health'], { encoding: 'utf8' })
    assert.equal(bad.status, 3)
  })

  test('finds the binary in the platform package, and names what it expected when it is missing', () => {
    const dir = tempDir('pkg')
    try {
      const pkg = path.join(dir, 'node_modules', '@broker-interceptor', 'interceptor-ebpf')
      fs.mkdirSync(path.join(pkg, 'bin'), { recursive: true })
      fs.copyFileSync(path.join(root, 'bin', 'interceptor-ebpf.js'), path.join(pkg, 'bin', 'interceptor-ebpf.js'))
      fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: '@broker-interceptor/interceptor-ebpf', version: '0.0.0' }))
      const missing = spawnSync(process.execPath, [path.join(pkg, 'bin', 'interceptor-ebpf.js'), '--version'], { encoding: 'utf8', env: { PATH: process.env.PATH } })
      assert.equal(missing.status, 127)
      assert.equal(missing.stderr.split('\n').filter(Boolean).length, 1, missing.stderr)
      assert.match(missing.stderr, /interceptor-ebpf-linux-\w+-(gnu|musl)\/interceptor-ebpf/)
      const platformName = require('../bin/interceptor-ebpf.js').platform().packageName
      const platformDir = path.join(dir, 'node_modules', ...platformName.split('/'))
      fs.mkdirSync(platformDir, { recursive: true })
      fs.writeFileSync(path.join(platformDir, 'package.json'), JSON.stringify({ name: platformName, version: '0.0.0' }))
      fs.copyFileSync(resolveBinary().path, path.join(platformDir, 'interceptor-ebpf'))
      fs.chmodSync(path.join(platformDir, 'interceptor-ebpf'), 0o755)
      const found = spawnSync(process.execPath, [path.join(pkg, 'bin', 'interceptor-ebpf.js'), '--version'], { encoding: 'utf8', env: { PATH: process.env.PATH } })
      assert.equal(found.status, 0, found.stderr)
      assert.match(found.stdout, /^interceptor-ebpf /)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

const rootSkip = isRoot() ? false : 'needs root (BPF, cgroups, network namespaces): run `sudo pnpm test`'
if (rootSkip && process.env.CI === 'true') throw new Error('ControlClient root tests cannot be skipped in CI: not running as root')

/** Starts the agent binary; resolves once its `started` line is out. */
function startAgent(env) {
  const child = spawn(resolveBinary().path, ['agent'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  // Verdict records come on stdout, operational lines (agent_event: started, stopped, ...) on stderr: both are
  // JSON lines, collected in arrival order.
  const lines = []
  let stderr = ''
  const collect = (stream, onText) => {
    let buffered = ''
    stream.on('data', (d) => {
      onText(String(d))
      buffered += d
      let nl
      while ((nl = buffered.indexOf('\n')) !== -1) {
        lines.push(JSON.parse(buffered.slice(0, nl)))
        buffered = buffered.slice(nl + 1)
      }
    })
  }
  collect(child.stdout, () => {})
  collect(child.stderr, (t) => (stderr += t))
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
  const ready = (async () => {
    const deadline = Date.now() + 30_000
    while (!lines.some((l) => l.agent_event === 'started')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the agent did not start: ${stderr}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  return { child, lines, exited, ready, stderr: () => stderr }
}

describe('ControlClient against the agent (root)', { skip: rootSkip }, () => {
  const iso = new Isolation('ebpf-cc')
  let dir
  let socketPath
  let agent
  let netns
  let workload
  let client

  before(async () => {
    dir = tempDir('agent')
    iso.defer(() => fs.rmSync(dir, { recursive: true, force: true }))
    socketPath = path.join(dir, 'run', 'agentd.sock')
    netns = iso.netns('ns')
    for (const a of ['10.78.0.10', '10.78.0.99']) run('ip', ['-n', netns, 'addr', 'add', `${a}/32`, 'dev', 'lo'])
    const parent = iso.cgroup('attach')
    workload = iso.cgroup('attach/workload')
    agent = startAgent({
      BROKER_EBPF_CGROUP_ROOT: parent,
      BROKER_EBPF_PIN_DIR: iso.pinDir('pins'),
      BROKER_EBPF_CONTROL_SOCKET: socketPath,
      BROKER_EBPF_SOCKET_MODE: '0666',
      BROKER_EBPF_SOCKET_DIR_MODE: '0755',
      BROKER_EBPF_PRIVILEGED_UIDS: '0',
      BROKER_EBPF_HEARTBEAT_GRACE_MS: '1500',
      BROKER_EBPF_CLIENT_IDLE_TIMEOUT_MS: '400',
    })
    iso.defer(() => {
      if (agent.child.exitCode === null) agent.child.kill('SIGKILL')
    })
    await agent.ready
    client = await ControlClient.connect(socketPath)
    iso.defer(() => client.close())
  })

  after(async () => {
    const errors = await iso.cleanup()
    assert.deepEqual(errors.map((e) => e.message), [])
  })

  const payloadPath = (dir) => '/' + path.relative(fs.realpathSync(cgroup2Mount()), fs.realpathSync(dir))

  test('every command, typed data back', async () => {
    const h = await client.getHealth()
    assert.equal(h.status, 'degraded')
    assert.match(h.degradedReasons[0], /no policy loaded/)
    assert.equal(h.adopted, false)
    assert.match(h.degradedSince, /Z$/)
    assert.match(h.version, /^\d+\.\d+\.\d+/)
    assert.deepEqual(await client.getPolicySnapshot(), { generation: 0 })
    const summary = await client.replacePolicySnapshot({
      broker: [{ ip: '10.78.0.10', port: 8081 }],
      dns: [],
      rules: [{ id: 'deny-99', action: 'deny', cidr: '10.78.0.99/32' }],
    })
    assert.deepEqual(summary, { generation: 1, ipv4Rules: 1, ipv6Rules: 0, brokerEndpoints: 1, dnsEndpoints: 0, fqdnRules: 0, brokerNames: 0 })
    assert.deepEqual(await client.getPolicySummary(), summary)
    assert.deepEqual(await client.getPolicySnapshot(), {
      generation: 1,
      snapshot: {
        broker: [{ ip: '10.78.0.10', port: 8081 }],
        dns: [],
        rules: [{ id: 'deny-99', action: 'deny', cidr: '10.78.0.99/32' }],
        sampling: { allowOneIn: 1, unmanagedOneIn: 0 },
        dnsQueries: 'any',
      },
    })
    assert.equal((await client.getHealth()).status, 'ok')
    const entry = await client.upsertManagedCgroup({ path: payloadPath(workload), workloadId: 'wl-node' })
    assert.equal(entry.path, payloadPath(workload))
    assert.match(entry.cgroupId, /^\d+$/)
    assert.deepEqual(await client.setCgroupMode({ id: entry.cgroupId, mode: 'enforce' }), { ...entry, mode: 'enforce' })
    assert.deepEqual(await client.setGlobalMode('enforce'), { globalMode: 'enforce' })
    const status = await client.getStatus()
    assert.deepEqual(status.managedCgroups, [{ ...entry, mode: 'enforce' }])
    assert.equal(status.generation, 1)
    await assert.rejects(client.upsertManagedCgroup({ path: '/outside/the/root' }), (e) => {
      assert.equal(e.code, 'ERR_CONTROL_REFUSED')
      assert.equal(e.reason_code, 'CTRL_COMMAND_FAILED')
      assert.match(e.message, /outside the agent's cgroup root/)
      return true
    })
  })

  test('an idle connection the agent closed is reopened', async () => {
    await new Promise((r) => setTimeout(r, 700))
    assert.equal((await client.getPolicySummary()).generation, 1)
  })

  test('subscribeEvents yields parsed events of a workload in a managed cgroup', async () => {
    const events = client.subscribeEvents()
    const first = events.next()
    // The subscription is acknowledged before the probe runs: the agent keeps no history.
    await new Promise((r) => setTimeout(r, 200))
    const probe = await runIn(workload, netns, [process.execPath, path.join(here, 'interceptor-probe.mjs'), 'tcp', '10.78.0.99', 443])
    assert.equal(probe.code, 0, probe.stderr)
    const { pid, errno } = JSON.parse(probe.stdout)
    assert.equal(errno, 'EPERM')
    const { value } = await first
    assert.equal(value.pid, pid)
    assert.equal(value.reason_code, 'DENY_EXPLICIT')
    assert.equal(value.rule_id, 'deny-99')
    assert.equal(value.workload_id, 'wl-node')
    assert.equal(Object.keys(value)[0], 'code_namespace')
    const done = await events.return()
    assert.equal(done.done, true)
  })

  test('a mutation from another uid is refused with its reason code', async () => {
    const script = `
      const { ControlClient } = require(${JSON.stringify(path.join(root, 'index.js'))})
      ControlClient.connect(${JSON.stringify(socketPath)}).then(async (c) => {
        const h = await c.getStatus()
        try { await c.setGlobalMode('observe'); console.log('applied') }
        catch (e) { console.log(JSON.stringify({ code: e.code, reason_code: e.reason_code, read: h.generation })) }
        c.close()
      })`
    const r = spawnSync(process.execPath, ['-e', script], { uid: 4321, gid: 4321, encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), { code: 'ERR_CONTROL_REFUSED', reason_code: 'CTRL_AUTH_PEERCRED_REJECTED_UID', read: 1 })
    const deadline = Date.now() + 5000
    while (!agent.lines.some((l) => l.reason_code === 'CTRL_AUTH_PEERCRED_REJECTED_UID' && l.command === 'SetGlobalMode')) {
      assert.ok(Date.now() < deadline, 'the refusal is logged')
      await new Promise((r) => setTimeout(r, 20))
    }
  })

  test('shutdown({detach: true}) stops the agent and removes the pins', async () => {
    await client.shutdown({ detach: true })
    assert.equal(await agent.exited, 0)
    assert.ok(agent.lines.some((l) => l.agent_event === 'stopped' && l.enforcement === 'detached'))
    await assert.rejects(client.getHealth(), (e) => e.code === 'ERR_CONTROL_CONNECTION')
  })
})
