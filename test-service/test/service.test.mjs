// The test service and the broker stand-in without the kernel: mTLS, the workload id check, the manifest
// modes of BROKER_FAIL_ON_MANIFEST_ERROR, and the direct call's report when nothing refuses it. What the
// kernel says to a managed service is checked by the labs (scripts/lab/native/up.sh, scripts/lab/docker/up.sh).
//   node --test test-service/test/
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const certs = mkdtempSync(path.join(tmpdir(), 'interceptor-node-test-certs-'))
const children = []

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

function start(script, env) {
  const child = spawn(process.execPath, [script], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.output = ''
  child.stdout.on('data', (d) => (child.output += d))
  child.stderr.on('data', (d) => (child.output += d))
  child.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
  children.push(child)
  return child
}

async function waitFor(fn, what, ms = 10000) {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const tls = (name) => ({
  BROKER_MTLS_CERT_PATH: path.join(certs, `${name}.crt`),
  BROKER_MTLS_KEY_PATH: path.join(certs, `${name}.key`),
  BROKER_MTLS_CA_PATH: path.join(certs, 'ca.crt'),
})

let brokerPort
let upstreamPort
let dnsPort

before(async () => {
  execFileSync('bash', [path.join(root, 'test-service/gen-certs.sh'), certs], { stdio: 'ignore' })
  brokerPort = await freePort()
  upstreamPort = await freePort()
  const broker = start('test-service/broker-stand-in.mjs', {
    BROKER_PORT: String(brokerPort),
    UPSTREAM_PORT: String(upstreamPort),
    BROKER_TLS_CERT_PATH: path.join(certs, 'broker.crt'),
    BROKER_TLS_KEY_PATH: path.join(certs, 'broker.key'),
    BROKER_TLS_CA_PATH: path.join(certs, 'ca.crt'),
  })
  await waitFor(() => broker.output.includes('upstream stand-in listening'), 'the broker stand-in')
  dnsPort = await freePort()
  const dns = start('test-service/dns-stand-in.mjs', { DNS_PORT: String(dnsPort), DNS_TTL: '5' })
  await waitFor(() => dns.output.includes('dns stand-in listening'), 'the DNS stand-in')
})

after(() => {
  for (const c of children) c.kill('SIGKILL')
  rmSync(certs, { recursive: true, force: true })
})

async function service(env) {
  const port = await freePort()
  const child = start('test-service/server.mjs', { PORT: String(port), BROKER_LOG_LEVEL: 'info', ...env })
  const base = `http://127.0.0.1:${port}`
  await waitFor(() => fetch(`${base}/health`).then((r) => r.ok), 'the test service')
  return { base, child }
}

test('a chat goes through the broker over mTLS with the workload id', async () => {
  const { base } = await service({ BROKER_URL: `https://localhost:${brokerPort}`, ...tls('workload') })
  const health = await waitFor(
    () => fetch(`${base}/health`).then((r) => r.json()).then((h) => h.broker.manifest === 'loaded' && h),
    'the manifest',
  )
  assert.equal(health.status, 'ok')
  assert.equal(health.workloadId, 'w_f73d1dc18e9c41bc89c5928d5bc67230')
  const res = await fetch(`${base}/chat`, { method: 'POST', body: JSON.stringify({ message: 'hi' }) })
  assert.equal(res.status, 200)
  const body = await res.json()
  assert.equal(body.via, 'broker')
  assert.match(body.reply, /broker stand-in received "hi" from w_f73d1dc18e9c41bc89c5928d5bc67230/)
})

test('BROKER_DNS_SERVER: the broker is found by name through that server, and its certificate covers the name', async () => {
  const { base, child } = await service({
    BROKER_URL: `https://broker.lab.internal:${brokerPort}`,
    BROKER_DNS_SERVER: `127.0.0.1:${dnsPort}`,
    BROKER_LOG_LEVEL: 'debug',
    ...tls('workload'),
  })
  const health = await waitFor(
    () => fetch(`${base}/health`).then((r) => r.json()).then((h) => h.broker.manifest === 'loaded' && h),
    'the manifest',
  )
  assert.equal(health.broker.url, `https://broker.lab.internal:${brokerPort}`)
  const res = await fetch(`${base}/chat`, { method: 'POST', body: JSON.stringify({ message: 'by name' }) })
  assert.equal(res.status, 200)
  assert.match((await res.json()).reply, /broker stand-in received "by name"/)
  assert.match(child.output, /"msg":"broker name resolved".*"addresses":\["127\.0\.0\.1","::1"\]/)
})

test('BROKER_DNS_SERVER: a name the server does not know leaves the broker unavailable (ENOTFOUND)', async () => {
  const { base } = await service({
    BROKER_URL: `https://nowhere.lab.internal:${brokerPort}`,
    BROKER_DNS_SERVER: `127.0.0.1:${dnsPort}`,
    ...tls('workload'),
  })
  const health = await waitFor(
    () => fetch(`${base}/health`).then((r) => r.json()).then((h) => h.broker.manifest === 'unavailable' && h),
    'the manifest failure',
  )
  assert.equal(health.broker.error.errno, 'ENOTFOUND')
})

test('the broker refuses a workload id that is not the certificate CN', async () => {
  const { base } = await service({
    BROKER_URL: `https://localhost:${brokerPort}`,
    BROKER_WORKLOAD_ID: 'w_someone_else',
    ...tls('workload'),
  })
  const res = await fetch(`${base}/chat`, { method: 'POST', body: JSON.stringify({ message: 'hi' }) })
  assert.equal(res.status, 502)
  assert.equal((await res.json()).broker.cn, 'w_f73d1dc18e9c41bc89c5928d5bc67230')
})

test('the broker refuses a client certificate that is not for client authentication', async () => {
  const { base } = await service({ BROKER_URL: `https://localhost:${brokerPort}`, ...tls('broker') })
  const res = await fetch(`${base}/chat`, { method: 'POST', body: JSON.stringify({ message: 'hi' }) })
  // The broker's own certificate is a server certificate: not valid for client authentication.
  assert.equal(res.status, 502)
})

test('an unreachable broker keeps the service up by default and reports it', async () => {
  const dead = await freePort()
  const { base } = await service({ BROKER_URL: `https://localhost:${dead}`, ...tls('workload') })
  const health = await waitFor(
    () => fetch(`${base}/health`).then((r) => r.json()).then((h) => h.broker.manifest === 'unavailable' && h),
    'the manifest failure',
  )
  assert.equal(health.broker.error.errno, 'ECONNREFUSED')
})

test('BROKER_FAIL_ON_MANIFEST_ERROR=true stops the service when the broker is unreachable', async () => {
  const dead = await freePort()
  const port = await freePort()
  const child = start('test-service/server.mjs', {
    PORT: String(port),
    BROKER_URL: `https://localhost:${dead}`,
    BROKER_FAIL_ON_MANIFEST_ERROR: 'true',
    ...tls('workload'),
  })
  assert.equal(await child.exited, 1)
  assert.match(child.output, /BROKER_FAIL_ON_MANIFEST_ERROR=true: exiting/)
})

test('a direct call that nothing refuses is reported as reached', async () => {
  const { base } = await service({
    BROKER_URL: '',
    DIRECT_CALL_URL: `http://127.0.0.1:${upstreamPort}/v1/chat/completions`,
  })
  const body = await (await fetch(`${base}/direct-call`, { method: 'POST' })).json()
  assert.equal(body.outcome, 'reached')
  assert.equal(body.status, 200)
  assert.equal(body.body.reached, 'upstream-stand-in')
})

test('bad configuration stops the service with one line naming the variable', async () => {
  for (const [name, value] of [
    ['PORT', '70000'],
    ['BROKER_FAIL_ON_MANIFEST_ERROR', 'maybe'],
    ['BROKER_URL', 'ftp://x'],
    ['BROKER_LOG_LEVEL', 'loud'],
    ['BROKER_DNS_SERVER', 'resolver.example:53'],
    ['BROKER_DNS_SERVER', '127.0.0.1:0'],
    ['BROKER_DNS_SERVER', '[::1]:70000'],
    ['BROKER_DNS_SERVER', '300.1.1.1'],
  ]) {
    const child = start('test-service/server.mjs', { PORT: '3999', [name]: value })
    assert.equal(await child.exited, 2, name)
    assert.match(child.output, new RegExp(name), name)
  }
})
