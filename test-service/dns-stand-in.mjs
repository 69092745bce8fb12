// The labs' resolver: a small authoritative DNS stand-in that knows one name, the broker's. It lets the test
// service resolve the broker by name (BROKER_DNS_SERVER) through a resolver the lab controls, without touching
// the host's /etc/resolv.conf, so that the agent's DNS proxy sees the answer and learns the broker's addresses
// (SPEC 4b, "Rules by name"). It runs as lab infrastructure, never in a managed cgroup.
//
//   node test-service/dns-stand-in.mjs
//
// Environment:
//   DNS_HOST=127.0.0.1             listen address (UDP and TCP)
//   DNS_PORT=5300                  listen port (UDP and TCP)
//   DNS_NAME=broker.lab.internal   the one name it answers for (case-insensitive, trailing dot ignored)
//   DNS_A=127.0.0.1                its IPv4 addresses, comma-separated; empty: none
//   DNS_AAAA=::1                   its IPv6 addresses, comma-separated; empty: none
//   DNS_TTL=30                     the answers' TTL in seconds
//   BROKER_LOG_LEVEL=info          debug | info | warn | error; JSON lines on stdout
//
// Answers: A/AAAA/ANY for DNS_NAME with its addresses (authoritative); any other type for DNS_NAME: no answer
// (NOERROR); any other name: NXDOMAIN; an opcode other than QUERY: NOTIMP; a malformed question: FORMERR.
// Over TCP, messages carry the two-byte length prefix of RFC 1035 4.2.2, several per connection.
import dgram from 'node:dgram'
import net from 'node:net'
import { pathToFileURL } from 'node:url'

import { createLogger } from './common.mjs'

export const TYPE = { A: 1, AAAA: 28, ANY: 255 }
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 }
const CLASS_IN = 1

/** Lower case, no trailing dot. */
export function canonicalName(name) {
  return name.toLowerCase().replace(/\.$/, '')
}

/** The question of a query: {id, flags, name, type, class, end} or throws (too short, bad labels, compression). */
export function parseQuery(buf) {
  if (buf.length < 12) throw new Error('shorter than a DNS header')
  const id = buf.readUInt16BE(0)
  const flags = buf.readUInt16BE(2)
  const qdcount = buf.readUInt16BE(4)
  if (qdcount !== 1) throw new Error(`expected one question, got ${qdcount}`)
  const labels = []
  let offset = 12
  for (;;) {
    if (offset >= buf.length) throw new Error('question name runs past the message')
    const len = buf[offset]
    offset += 1
    if (len === 0) break
    if (len > 63) throw new Error('compressed or oversized label in the question')
    if (offset + len > buf.length) throw new Error('label runs past the message')
    labels.push(buf.toString('latin1', offset, offset + len))
    offset += len
  }
  if (offset + 4 > buf.length) throw new Error('question type and class missing')
  return {
    id,
    flags,
    name: canonicalName(labels.join('.')),
    type: buf.readUInt16BE(offset),
    class: buf.readUInt16BE(offset + 2),
    end: offset + 4,
  }
}

/** Raw bytes of an address for RDATA: 4 for IPv4, 16 for IPv6. */
export function addressBytes(ip) {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  if (!net.isIPv6(ip)) throw new Error(`not an IP address: ${ip}`)
  let [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined]
  const groups = (text) => (text === '' || text === undefined ? [] : text.split(':'))
  let left = groups(head)
  let right = groups(tail)
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
  const embed = (list) => {
    const last = list[list.length - 1]
    if (last !== undefined && last.includes('.')) {
      const b = addressBytes(last)
      list.splice(-1, 1, ((b[0] << 8) | b[1]).toString(16), ((b[2] << 8) | b[3]).toString(16))
    }
  }
  if (tail === undefined) embed(left)
  else embed(right)
  const zeros = tail === undefined ? [] : new Array(8 - left.length - right.length).fill('0')
  const all = [...left, ...zeros, ...right]
  const out = Buffer.alloc(16)
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

/**
 * The response to one query message, or null when the message is too broken to answer (no header).
 * zone: {name, a: string[], aaaa: string[], ttl}
 */
export function respond(query, zone) {
  if (query.length < 12) return null
  const id = query.readUInt16BE(0)
  const qflags = query.readUInt16BE(2)
  if (qflags & 0x8000) return null // a response, not a query: never answer it
  const opcode = (qflags >> 11) & 0xf
  const rd = qflags & 0x0100
  const header = (rcode, qd, an) => {
    const h = Buffer.alloc(12)
    h.writeUInt16BE(id, 0)
    // QR, the query's opcode, AA (we are the authority for the name), RD echoed, RA off: no recursion here.
    h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | rd | rcode, 2)
    h.writeUInt16BE(qd, 4)
    h.writeUInt16BE(an, 6)
    return h
  }
  if (opcode !== 0) return header(RCODE.NOTIMP, 0, 0)
  let q
  try {
    q = parseQuery(query)
  } catch {
    return header(RCODE.FORMERR, 0, 0)
  }
  const question = query.subarray(12, q.end)
  if (q.name !== canonicalName(zone.name)) return Buffer.concat([header(RCODE.NXDOMAIN, 1, 0), question])
  const answers = []
  if (q.class === CLASS_IN || q.class === 255) {
    const wants = (type) => q.type === type || q.type === TYPE.ANY
    if (wants(TYPE.A)) for (const ip of zone.a) answers.push(record(TYPE.A, ip, zone.ttl))
    if (wants(TYPE.AAAA)) for (const ip of zone.aaaa) answers.push(record(TYPE.AAAA, ip, zone.ttl))
  }
  return Buffer.concat([header(RCODE.NOERROR, 1, answers.length), question, ...answers])
}

function record(type, ip, ttl) {
  const rdata = addressBytes(ip)
  const rr = Buffer.alloc(12)
  rr.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's, at offset 12
  rr.writeUInt16BE(type, 2)
  rr.writeUInt16BE(CLASS_IN, 4)
  rr.writeUInt32BE(ttl, 6)
  rr.writeUInt16BE(rdata.length, 10)
  return Buffer.concat([rr, rdata])
}

/** The zone from the environment; throws with the variable's name on a bad value. */
export function zoneFromEnv(env) {
  const list = (name, fallback, check) => {
    const text = env[name] ?? fallback
    const ips = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
    for (const ip of ips) if (!check(ip)) throw new Error(`${name} must be comma-separated ${check === net.isIPv4 ? 'IPv4' : 'IPv6'} addresses, received ${JSON.stringify(text)}`)
    return ips
  }
  const name = canonicalName(env.DNS_NAME ?? 'broker.lab.internal')
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name) || name.length > 253 || name.split('.').some((l) => l.length > 63)) {
    throw new Error(`DNS_NAME must be a DNS name, received ${JSON.stringify(env.DNS_NAME)}`)
  }
  const ttlText = env.DNS_TTL ?? '30'
  const ttl = Number(ttlText)
  if (!/^[0-9]+$/.test(ttlText) || ttl > 2 ** 31 - 1) throw new Error(`DNS_TTL must be seconds 0..2147483647, received ${JSON.stringify(ttlText)}`)
  return { name, a: list('DNS_A', '127.0.0.1', net.isIPv4), aaaa: list('DNS_AAAA', '::1', net.isIPv6), ttl }
}

/** Starts the UDP and TCP listeners; resolves to {udp, tcp, port, close()} once both listen. */
export async function startDnsStandIn({ host = '127.0.0.1', port = 5300, zone, log }) {
  const describe = (msg) => {
    try {
      const q = parseQuery(msg)
      return { name: q.name, type: q.type }
    } catch {
      return { name: null }
    }
  }
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4')
  udp.on('message', (msg, rinfo) => {
    const out = respond(msg, zone)
    log?.debug('query', { transport: 'udp', from: `${rinfo.address}:${rinfo.port}`, ...describe(msg), rcode: out ? out[3] & 0xf : null })
    if (out) udp.send(out, rinfo.port, rinfo.address)
  })
  const tcp = net.createServer((sock) => {
    let pending = Buffer.alloc(0)
    sock.setTimeout(10000, () => sock.destroy())
    sock.on('error', () => {})
    sock.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0)
        if (pending.length < 2 + len) break
        const msg = pending.subarray(2, 2 + len)
        pending = pending.subarray(2 + len)
        const out = respond(msg, zone)
        log?.debug('query', { transport: 'tcp', from: `${sock.remoteAddress}:${sock.remotePort}`, ...describe(msg), rcode: out ? out[3] & 0xf : null })
        if (!out) return sock.destroy()
        const prefix = Buffer.alloc(2)
        prefix.writeUInt16BE(out.length, 0)
        sock.write(Buffer.concat([prefix, out]))
      }
    })
  })
  await new Promise((resolve, reject) => {
    udp.once('error', reject)
    udp.bind(port, host, () => {
      udp.off('error', reject)
      resolve()
    })
  })
  const bound = udp.address().port
  await new Promise((resolve, reject) => {
    tcp.once('error', reject)
    tcp.listen(bound, host, () => {
      tcp.off('error', reject)
      resolve()
    })
  })
  return {
    udp,
    tcp,
    port: bound,
    close: () => new Promise((resolve) => {
      udp.close()
      tcp.close(() => resolve())
    }),
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const fail = (message) => {
    process.stderr.write(`dns-stand-in: ${message}\n`)
    process.exit(2)
  }
  let zone
  let log
  try {
    zone = zoneFromEnv(process.env)
  } catch (err) {
    fail(err.message)
  }
  const host = process.env.DNS_HOST ?? '127.0.0.1'
  if (!net.isIP(host)) fail(`DNS_HOST must be an IP address, received ${JSON.stringify(host)}`)
  const portText = process.env.DNS_PORT ?? '5300'
  const port = Number(portText)
  if (!/^[0-9]+$/.test(portText) || port < 1 || port > 65535) fail(`DNS_PORT must be 1..65535, received ${JSON.stringify(portText)}`)
  try {
    log = createLogger('dns-stand-in', process.env.BROKER_LOG_LEVEL ?? 'info')
  } catch (err) {
    fail(`BROKER_LOG_LEVEL: ${err.message}`)
  }
  let server
  try {
    server = await startDnsStandIn({ host, port, zone, log })
  } catch (err) {
    log.error('cannot listen', { host, port, error: err.message })
    process.exit(1)
  }
  log.info('dns stand-in listening', { host, port: server.port, transports: ['udp', 'tcp'], ...zone })
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      log.info('stopping', { signal })
      server.close().then(() => process.exit(0))
      setTimeout(() => process.exit(0), 2000).unref()
    })
  }
}
