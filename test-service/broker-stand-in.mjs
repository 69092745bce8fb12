// A stand-in for the broker, for the labs: an HTTPS server that requires a client certificate signed by the
// lab CA (mTLS) and answers
//   GET  /health                              {status: "ok"}
//   GET  /v1/workloads/:id/manifest           the workload's manifest (what the test service loads at start)
//   POST /chat                                a canned chat completion, never a call to any AI API
// A request whose x-broker-workload-id header differs from the client certificate's CN is refused (403).
//
// With UPSTREAM_PORT set it also serves a plain-HTTP "upstream AI API" on UPSTREAM_HOST:UPSTREAM_PORT: the
// destination of the test service's direct call (POST /direct-call). It is only there so that a direct call
// that is NOT refused by the kernel visibly succeeds, which the labs treat as a failure.
//
// Environment: BROKER_PORT (8081), BROKER_HOST ("::", falls back to 0.0.0.0 without IPv6),
// BROKER_TLS_CERT_PATH, BROKER_TLS_KEY_PATH, BROKER_TLS_CA_PATH (default ./test-service/certs/broker.crt,
// broker.key, ca.crt), UPSTREAM_PORT (unset: no upstream stand-in), UPSTREAM_HOST (127.0.0.1),
// BROKER_LOG_LEVEL (info). No dependency beyond Node's standard library.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'

import { createLogger, readJsonBody, sendJson } from './common.mjs'

const env = process.env
const log = createLogger('broker-stand-in', env.BROKER_LOG_LEVEL ?? 'info')
const certDir = './test-service/certs'
const port = Number(env.BROKER_PORT ?? 8081)
const host = env.BROKER_HOST ?? '::'

const tls = {
  cert: readFileSync(env.BROKER_TLS_CERT_PATH ?? `${certDir}/broker.crt`),
  key: readFileSync(env.BROKER_TLS_KEY_PATH ?? `${certDir}/broker.key`),
  ca: readFileSync(env.BROKER_TLS_CA_PATH ?? `${certDir}/ca.crt`),
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: 'TLSv1.2',
}

let served = 0

const broker = https.createServer(tls, async (req, res) => {
  const cn = req.socket.getPeerCertificate()?.subject?.CN
  const workloadId = req.headers['x-broker-workload-id']
  const url = new URL(req.url ?? '/', 'https://broker')
  const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
  try {
    if (req.method === 'GET' && url.pathname === '/health') {
      return sendJson(res, 200, { status: 'ok', service: 'broker-stand-in', served })
    }
    if (workloadId === undefined || workloadId !== cn) {
      log.warn('workload id does not match the client certificate', { remote, cn, workloadId, path: url.pathname })
      return sendJson(res, 403, { error: 'x-broker-workload-id must equal the client certificate CN', cn })
    }
    const manifest = url.pathname.match(/^\/v1\/workloads\/([^/]+)\/manifest$/)
    if (req.method === 'GET' && manifest) {
      if (decodeURIComponent(manifest[1]) !== cn) return sendJson(res, 403, { error: 'not your manifest' })
      served += 1
      log.info('manifest served', { remote, workloadId })
      return sendJson(res, 200, {
        workload_id: cn,
        broker: 'broker-stand-in',
        providers: [{ name: 'openai', hosts: ['api.openai.com'], route: '/chat' }],
      })
    }
    if (req.method === 'POST' && url.pathname === '/chat') {
      const body = await readJsonBody(req)
      const messages = Array.isArray(body?.request?.messages) ? body.request.messages : []
      const last = messages.at(-1)?.content
      if (typeof last !== 'string') return sendJson(res, 400, { error: 'request.messages[-1].content must be a string' })
      served += 1
      log.info('chat answered', { remote, workloadId, chars: last.length })
      return sendJson(res, 200, {
        id: `chatcmpl-standin-${served}`,
        object: 'chat.completion',
        model: body?.request?.model ?? 'stand-in',
        choices: [
          {
            index: 0,
            finish_reason: 'stop',
            message: { role: 'assistant', content: `broker stand-in received ${JSON.stringify(last)} from ${cn}` },
          },
        ],
        broker: { workload_id: cn, canned: true },
      })
    }
    return sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}` })
  } catch (err) {
    log.warn('bad request', { remote, error: String(err?.message ?? err) })
    return sendJson(res, 400, { error: String(err?.message ?? err) })
  }
})

broker.on('tlsClientError', (err, socket) => {
  log.warn('TLS handshake refused', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error: err.message })
})

function listen(server, listenHost, listenPort, what) {
  return new Promise((resolve, reject) => {
    const onError = (err) => {
      server.off('listening', onListening)
      reject(err)
    }
    const onListening = () => {
      server.off('error', onError)
      log.info(`${what} listening`, { host: listenHost, port: server.address().port })
      resolve()
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen({ host: listenHost, port: listenPort, ipv6Only: false })
  })
}

try {
  await listen(broker, host, port, 'broker')
} catch (err) {
  if (host === '::' && ['EAFNOSUPPORT', 'EADDRNOTAVAIL'].includes(err.code)) {
    await listen(broker, '0.0.0.0', port, 'broker')
  } else {
    log.error('cannot listen', { host, port, error: err.message })
    process.exit(1)
  }
}

if (env.UPSTREAM_PORT) {
  const upstream = http.createServer((req, res) => {
    log.warn('upstream stand-in reached directly: this call went around the broker', {
      remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      path: req.url,
    })
    req.resume()
    sendJson(res, 200, { reached: 'upstream-stand-in', note: 'this call went around the broker' })
  })
  await listen(upstream, env.UPSTREAM_HOST ?? '127.0.0.1', Number(env.UPSTREAM_PORT), 'upstream stand-in').catch(
    (err) => {
      log.error('cannot listen', { port: env.UPSTREAM_PORT, error: err.message })
      process.exit(1)
    },
  )
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log.info('stopping', { signal })
    process.exit(0)
  })
}
