// The interceptor-node test service, as a stand-in that needs nothing but Node's standard library: an HTTP
// server on PORT whose AI calls go through the broker over mTLS, plus an endpoint that tries to go around it.
//
//   GET  /health        {status: "ok", broker: {...manifest state}}
//   POST /chat          {message} -> the reply, through the broker (BROKER_URL) or, with BROKER_URL empty,
//                       straight to OPENAI_BASE_URL
//   POST /direct-call   (GET works too) tries DIRECT_CALL_URL directly, around the broker, and reports what
//                       the kernel said: the errno of connect() and, when BROKER_EBPF_EVENTS_FILE names the
//                       agent's event log, the reason code of the agent's event for that connect
//
// Environment (defaults of the original test service):
//   PORT=3000  HOST (all addresses)
//   BROKER_URL=https://localhost:8081          empty: no broker, calls go straight to OPENAI_BASE_URL
//   BROKER_WORKLOAD_ID=w_f73d1dc18e9c41bc89c5928d5bc67230
//   OPENAI_API_KEY=int_c7baa65e33244fb8b8bcd51a7072b57f   (an interceptor placeholder the broker swaps)
//   BROKER_MTLS_CERT_PATH=./test-service/certs/workload.crt
//   BROKER_MTLS_KEY_PATH=./test-service/certs/workload.key
//   BROKER_MTLS_CA_PATH=./test-service/certs/ca.crt
//   BROKER_LOG_LEVEL=debug                     debug | info | warn | error
//   BROKER_FAIL_ON_MANIFEST_ERROR=false        true: exit 1 when the broker's manifest cannot be loaded at
//                                              start; false: stay up, report it in /health, retry every 5 s
//   OPENAI_BASE_URL=https://api.openai.com/v1
//   DIRECT_CALL_URL=$OPENAI_BASE_URL/chat/completions
//   BROKER_EBPF_EVENTS_FILE                    NDJSON of DataplanePacketEvents (`interceptor-ebpf ctl events
//                                              --follow` output); unset: the reason code is not looked up
//   DIRECT_CALL_EVENT_WAIT_MS=3000             how long to wait for that event
//   BROKER_DNS_SERVER                          IP or IP:port ([v6]:port) of a DNS server: the broker URL's host
//                                              name is resolved there (A and AAAA) instead of through the
//                                              system's resolver; unset: the system's resolver (getaddrinfo)
import { readFileSync, openSync, readSync, closeSync, statSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { Resolver } from 'node:dns'
import { isIP } from 'node:net'

import { createLogger, readJsonBody, sendJson } from './common.mjs'

function fail(message) {
  process.stderr.write(`interceptor-node-test: ${message}\n`)
  process.exit(2)
}

function readConfig(env) {
  const port = Number(env.PORT ?? 3000)
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`PORT must be 1..65535, received ${JSON.stringify(env.PORT)}`)
  const bool = (name, fallback) => {
    const value = (env[name] ?? fallback).toLowerCase()
    if (value === 'true' || value === '1') return true
    if (value === 'false' || value === '0') return false
    return fail(`${name} must be true or false, received ${JSON.stringify(env[name])}`)
  }
  const url = (name, value) => {
    try {
      const parsed = new URL(value)
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http(s)')
      return parsed
    } catch {
      return fail(`${name} must be an http(s) URL, received ${JSON.stringify(value)}`)
    }
  }
  const brokerText = env.BROKER_URL ?? 'https://localhost:8081'
  const upstream = (env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1').replace(/\/+$/, '')
  const waitMs = Number(env.DIRECT_CALL_EVENT_WAIT_MS ?? 3000)
  if (!Number.isInteger(waitMs) || waitMs < 0) fail(`DIRECT_CALL_EVENT_WAIT_MS must be a non-negative integer`)
  return {
    port,
    host: env.HOST || undefined,
    brokerUrl: brokerText === '' ? null : url('BROKER_URL', brokerText),
    workloadId: env.BROKER_WORKLOAD_ID ?? 'w_f73d1dc18e9c41bc89c5928d5bc67230',
    apiKey: env.OPENAI_API_KEY ?? 'int_c7baa65e33244fb8b8bcd51a7072b57f',
    certPath: env.BROKER_MTLS_CERT_PATH ?? './test-service/certs/workload.crt',
    keyPath: env.BROKER_MTLS_KEY_PATH ?? './test-service/certs/workload.key',
    caPath: env.BROKER_MTLS_CA_PATH ?? './test-service/certs/ca.crt',
    logLevel: env.BROKER_LOG_LEVEL ?? 'debug',
    failOnManifestError: bool('BROKER_FAIL_ON_MANIFEST_ERROR', 'false'),
    upstreamUrl: url('OPENAI_BASE_URL', upstream),
    directCallUrl: url('DIRECT_CALL_URL', env.DIRECT_CALL_URL ?? `${upstream}/chat/completions`),
    eventsFile: env.BROKER_EBPF_EVENTS_FILE || null,
    eventWaitMs: waitMs,
    dnsServer: env.BROKER_DNS_SERVER ? dnsServer(env.BROKER_DNS_SERVER) : null,
  }
}

/** `IP`, `IP:port` or `[IPv6]:port` -> the form Resolver.setServers takes; a bad value stops the service. */
function dnsServer(text) {
  const bad = () => fail(`BROKER_DNS_SERVER must be IP, IP:port or [IPv6]:port, received ${JSON.stringify(text)}`)
  let ip
  let port = '53'
  const v6 = text.match(/^\[([^\]]+)\](?::([0-9]+))?$/)
  const v4 = text.match(/^([0-9.]+)(?::([0-9]+))?$/)
  if (v6) [, ip, port = '53'] = v6
  else if (v4) [, ip, port = '53'] = v4
  else if (isIP(text) === 6) ip = text
  else return bad()
  const n = Number(port)
  if (!isIP(ip) || !/^[0-9]{1,5}$/.test(port) || n < 1 || n > 65535) return bad()
  return isIP(ip) === 6 ? `[${ip}]:${n}` : `${ip}:${n}`
}

const config = readConfig(process.env)
let log
try {
  log = createLogger('interceptor-node-test', config.logLevel)
} catch (err) {
  fail(`BROKER_LOG_LEVEL: ${err.message}`)
}

// With BROKER_DNS_SERVER, the broker's name is resolved by that server alone (A and AAAA, no cache here: every
// connection asks again, as a workload whose answers expire would), through the `lookup` of the broker's
// requests. Without it, Node's default lookup (getaddrinfo, /etc/hosts and /etc/resolv.conf) applies.
let brokerLookup
if (config.brokerUrl && config.dnsServer) {
  const resolver = new Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([config.dnsServer])
  const query = (method, name) =>
    new Promise((resolve, reject) => resolver[method](name, (err, addresses) => (err ? reject(err) : resolve(addresses))))
  brokerLookup = (hostname, options, callback) => {
    if (typeof options === 'function') [callback, options] = [options, {}]
    const family = typeof options === 'number' ? options : (options?.family ?? 0)
    const all = typeof options === 'object' && options?.all === true
    const wanted = [family === 6 ? null : ['resolve4', 4], family === 4 ? null : ['resolve6', 6]].filter(Boolean)
    Promise.allSettled(wanted.map(([method]) => query(method, hostname))).then((results) => {
      const found = results.flatMap((r, i) => (r.status === 'fulfilled' ? r.value.map((address) => ({ address, family: wanted[i][1] })) : []))
      if (found.length === 0) {
        const cause = results.find((r) => r.status === 'rejected')?.reason
        const err = Object.assign(new Error(`${config.dnsServer} has no address for ${hostname}: ${cause?.code ?? 'no A/AAAA records'}`), {
          code: cause?.code ?? 'ENOTFOUND',
          syscall: 'queryA',
          hostname,
        })
        return callback(err)
      }
      log.debug('broker name resolved', { hostname, server: config.dnsServer, addresses: found.map((a) => a.address) })
      if (all) return callback(null, found)
      return callback(null, found[0].address, found[0].family)
    })
  }
}

// The mTLS client identity. A missing file is reported on every broker call and in /health rather than
// stopping the service, unless BROKER_FAIL_ON_MANIFEST_ERROR asks for that.
let brokerAgent = null
let brokerAgentError = null
if (config.brokerUrl) {
  try {
    brokerAgent = new https.Agent({
      cert: readFileSync(config.certPath),
      key: readFileSync(config.keyPath),
      ca: readFileSync(config.caPath),
      keepAlive: false,
      ...(brokerLookup ? { lookup: brokerLookup } : {}),
    })
  } catch (err) {
    brokerAgentError = `cannot read the mTLS files: ${err.message}`
    log.error('broker mTLS identity unavailable', { error: brokerAgentError })
  }
}

/** One HTTP(S) exchange with a JSON body; rejects with the socket error (its code is the errno). */
function exchange(url, { method = 'GET', headers = {}, body, agent, timeoutMs = 5000 }) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const lib = url.protocol === 'https:' ? https : http
    const req = lib.request(
      url,
      {
        method,
        agent,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...headers,
        },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let json
          try {
            json = text === '' ? undefined : JSON.parse(text)
          } catch {
            json = { text }
          }
          resolve({ status: res.statusCode, body: json })
        })
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })))
    req.on('error', reject)
    req.end(payload)
  })
}

function socketError(err) {
  // With several addresses, Node's happy-eyeballs connect reports an AggregateError: keep the first attempt.
  const first = err?.errors?.[0] ?? err
  return {
    error: String(first?.message ?? err),
    errno: first?.code ?? null,
    syscall: first?.syscall ?? null,
    address: first?.address ?? null,
    port: first?.port ?? null,
  }
}

function brokerHeaders() {
  return { 'x-broker-workload-id': config.workloadId, authorization: `Bearer ${config.apiKey}` }
}

const manifest = { status: config.brokerUrl ? 'pending' : 'disabled', attempts: 0, error: null, data: null }

async function loadManifest() {
  manifest.attempts += 1
  if (brokerAgentError) throw new Error(brokerAgentError)
  const url = new URL(`/v1/workloads/${encodeURIComponent(config.workloadId)}/manifest`, config.brokerUrl)
  const res = await exchange(url, { headers: brokerHeaders(), agent: brokerAgent })
  if (res.status !== 200) throw new Error(`broker answered ${res.status}: ${JSON.stringify(res.body)}`)
  return res.body
}

async function manifestLoop(first) {
  try {
    manifest.data = await loadManifest()
    manifest.status = 'loaded'
    manifest.error = null
    log.info('broker manifest loaded', { broker: config.brokerUrl.origin, attempts: manifest.attempts })
  } catch (err) {
    const detail = socketError(err)
    manifest.status = 'unavailable'
    manifest.error = detail
    if (first && config.failOnManifestError) {
      log.error('broker manifest unavailable and BROKER_FAIL_ON_MANIFEST_ERROR=true: exiting', detail)
      process.exit(1)
    }
    log.warn('broker manifest unavailable; staying up (BROKER_FAIL_ON_MANIFEST_ERROR=false), retrying in 5 s', detail)
    setTimeout(() => manifestLoop(false), 5000).unref()
  }
}

function normalizeIp(ip) {
  if (typeof ip !== 'string') return null
  const mapped = ip.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i)
  return (mapped ? mapped[1] : ip).toLowerCase()
}

function eventsFileSize() {
  try {
    return statSync(config.eventsFile).size
  } catch {
    return 0
  }
}

/** The deny event the agent wrote for our connect to address:port, appended after `offset`. */
async function findDenyEvent(offset, address, port) {
  const deadline = Date.now() + config.eventWaitMs
  const want = normalizeIp(address)
  let position = offset
  let pending = ''
  for (;;) {
    let fd
    try {
      fd = openSync(config.eventsFile, 'r')
      const buf = Buffer.alloc(1 << 16)
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, position)
        if (n === 0) break
        position += n
        pending += buf.subarray(0, n).toString('utf8')
        const lines = pending.split('\n')
        pending = lines.pop()
        for (const line of lines) {
          let event
          try {
            event = JSON.parse(line)
          } catch {
            continue
          }
          if (
            event?.code_namespace === 'dataplane_verdict' &&
            event.verdict === 'deny' &&
            event.dst_port === port &&
            normalizeIp(event.dst_ip) === want
          ) {
            return event
          }
        }
      }
    } catch (err) {
      if (err.code !== 'ENOENT') log.warn('cannot read the events file', { file: config.eventsFile, error: err.message })
    } finally {
      if (fd !== undefined) closeSync(fd)
    }
    if (Date.now() >= deadline) return null
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function directCall() {
  const target = config.directCallUrl
  const offset = config.eventsFile ? eventsFileSize() : 0
  const result = { target: target.href }
  try {
    const res = await exchange(target, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.apiKey}` },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'direct call around the broker' }] },
      timeoutMs: 5000,
    })
    // Reaching the destination at all means the kernel let the connect through.
    return { ...result, outcome: 'reached', status: res.status, body: res.body }
  } catch (err) {
    const detail = socketError(err)
    const refused = detail.errno === 'EPERM' && detail.syscall === 'connect'
    Object.assign(result, { outcome: refused ? 'refused' : 'failed', ...detail })
    if (!refused) return result
    result.kernel = 'connect() failed with EPERM: refused by a cgroup eBPF program'
    if (!config.eventsFile) {
      result.reasonCode = null
      result.eventSource = 'BROKER_EBPF_EVENTS_FILE is not set: reason code not looked up'
      return result
    }
    const event = await findDenyEvent(offset, detail.address ?? (isIP(target.hostname) ? target.hostname : null), detail.port)
    result.reasonCode = event?.reason_code ?? null
    result.event = event
    if (!event) result.eventSource = `no matching deny event in ${config.eventsFile} within ${config.eventWaitMs} ms`
    return result
  }
}

async function chat(message) {
  const request = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: message }] }
  if (config.brokerUrl) {
    if (brokerAgentError) return { status: 502, body: { via: 'broker', error: brokerAgentError } }
    const url = new URL('/chat', config.brokerUrl)
    const res = await exchange(url, {
      method: 'POST',
      headers: brokerHeaders(),
      body: { workload_id: config.workloadId, provider: 'openai', request },
      agent: brokerAgent,
    })
    if (res.status !== 200) return { status: 502, body: { via: 'broker', error: `broker answered ${res.status}`, broker: res.body } }
    return { status: 200, body: { via: 'broker', reply: res.body?.choices?.[0]?.message?.content ?? null, id: res.body?.id } }
  }
  const res = await exchange(new URL(`${config.upstreamUrl.href}/chat/completions`), {
    method: 'POST',
    headers: { authorization: `Bearer ${config.apiKey}` },
    body: request,
  })
  return { status: res.status === 200 ? 200 : 502, body: { via: 'direct', reply: res.body?.choices?.[0]?.message?.content ?? null, upstream: res.status } }
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://service')
  const started = Date.now()
  let status = 500
  try {
    if (req.method === 'GET' && url.pathname === '/health') {
      status = 200
      return sendJson(res, status, {
        status: 'ok',
        service: 'interceptor-node-test',
        workloadId: config.workloadId,
        pid: process.pid,
        broker: config.brokerUrl
          ? { url: config.brokerUrl.origin, manifest: manifest.status, attempts: manifest.attempts, error: manifest.error }
          : { url: null, manifest: 'disabled' },
      })
    }
    if (req.method === 'POST' && url.pathname === '/chat') {
      let body
      try {
        body = await readJsonBody(req)
      } catch (err) {
        status = 400
        return sendJson(res, status, { error: err.message })
      }
      if (typeof body?.message !== 'string' || body.message === '') {
        status = 400
        return sendJson(res, status, { error: 'body must be {"message": "<non-empty string>"}' })
      }
      try {
        const out = await chat(body.message)
        status = out.status
        return sendJson(res, status, out.body)
      } catch (err) {
        status = 502
        const detail = socketError(err)
        log.warn('chat call failed', detail)
        return sendJson(res, status, { via: config.brokerUrl ? 'broker' : 'direct', ...detail })
      }
    }
    if ((req.method === 'POST' || req.method === 'GET') && url.pathname === '/direct-call') {
      req.resume()
      const out = await directCall()
      log.info('direct call', { outcome: out.outcome, errno: out.errno, reasonCode: out.reasonCode, target: out.target })
      status = 200
      return sendJson(res, status, out)
    }
    status = 404
    return sendJson(res, status, { error: `no route ${req.method} ${url.pathname}`, routes: ['GET /health', 'POST /chat', 'POST /direct-call'] })
  } finally {
    log.debug('request', { method: req.method, path: url.pathname, status, ms: Date.now() - started })
  }
})

server.on('error', (err) => {
  log.error('cannot listen', { port: config.port, error: err.message })
  process.exit(1)
})
server.listen({ port: config.port, host: config.host }, () => {
  log.info('listening', {
    port: config.port,
    broker: config.brokerUrl?.origin ?? null,
    workloadId: config.workloadId,
    directCallUrl: config.directCallUrl.href,
    eventsFile: config.eventsFile,
    dnsServer: config.dnsServer,
  })
  if (config.brokerUrl) manifestLoop(true)
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log.info('stopping', { signal })
    server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
}
