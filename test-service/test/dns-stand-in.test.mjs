// The labs' DNS stand-in without the kernel: its answers over UDP (through Node's own resolver, c-ares, as the
// test service asks) and over TCP (length-prefixed, two messages on one connection), and its refusals.
//   node --test test-service/test/
import assert from 'node:assert/strict'
import { Resolver } from 'node:dns/promises'
import net from 'node:net'
import { after, before, test } from 'node:test'

import { RCODE, TYPE, addressBytes, respond, startDnsStandIn, zoneFromEnv } from '../dns-stand-in.mjs'

const zone = zoneFromEnv({ DNS_TTL: '30' })
let server
let resolver

before(async () => {
  server = await startDnsStandIn({ host: '127.0.0.1', port: 0, zone })
  resolver = new Resolver({ timeout: 1000, tries: 1 })
  resolver.setServers([`127.0.0.1:${server.port}`])
})

after(() => server.close())

/** A query message for name/type with the given id (RD set, as stub resolvers send). */
function query(name, type, id = 0x1234, opcode = 0) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]))
  const header = Buffer.alloc(12)
  header.writeUInt16BE(id, 0)
  header.writeUInt16BE((opcode << 11) | 0x0100, 2)
  header.writeUInt16BE(1, 4)
  const tail = Buffer.alloc(4)
  tail.writeUInt16BE(type, 0)
  tail.writeUInt16BE(1, 2)
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail])
}

test('the defaults: broker.lab.internal, 127.0.0.1 and ::1, TTL 30 s', () => {
  assert.deepEqual(zoneFromEnv({}), { name: 'broker.lab.internal', a: ['127.0.0.1'], aaaa: ['::1'], ttl: 30 })
})

test('A and AAAA over UDP, with the TTL, case-insensitive', async () => {
  assert.deepEqual(await resolver.resolve4('broker.lab.internal', { ttl: true }), [{ address: '127.0.0.1', ttl: 30 }])
  assert.deepEqual(await resolver.resolve6('Broker.Lab.Internal', { ttl: true }), [{ address: '::1', ttl: 30 }])
})

test('another name is NXDOMAIN', async () => {
  await assert.rejects(resolver.resolve4('api.openai.com'), { code: 'ENOTFOUND' })
  await assert.rejects(resolver.resolve6('lab.internal'), { code: 'ENOTFOUND' })
})

test('another type for the name answers nothing (NOERROR, no records)', async () => {
  await assert.rejects(resolver.resolveTxt('broker.lab.internal'), { code: 'ENODATA' })
})

test('the response: authoritative, id and question echoed, RD kept, answers point at the question name', () => {
  const out = respond(query('broker.lab.internal', TYPE.A, 0xbeef), zone)
  assert.equal(out.readUInt16BE(0), 0xbeef)
  const flags = out.readUInt16BE(2)
  assert.equal(flags & 0x8000, 0x8000, 'QR')
  assert.equal(flags & 0x0400, 0x0400, 'AA')
  assert.equal(flags & 0x0100, 0x0100, 'RD')
  assert.equal(flags & 0xf, RCODE.NOERROR)
  assert.deepEqual([out.readUInt16BE(4), out.readUInt16BE(6), out.readUInt16BE(8), out.readUInt16BE(10)], [1, 1, 0, 0])
  assert.equal(out.readUInt16BE(out.length - 16), 0xc00c)
  assert.equal(out.readUInt32BE(out.length - 10), 30)
  assert.deepEqual([...out.subarray(out.length - 4)], [127, 0, 0, 1])
})

test('refusals: NOTIMP for another opcode, FORMERR for a broken question, silence for a response or a stub', () => {
  assert.equal(respond(query('broker.lab.internal', TYPE.A, 1, 2), zone)[3] & 0xf, RCODE.NOTIMP)
  const broken = query('broker.lab.internal', TYPE.A).subarray(0, 20)
  assert.equal(respond(broken, zone)[3] & 0xf, RCODE.FORMERR)
  const answer = respond(query('broker.lab.internal', TYPE.A), zone)
  assert.equal(respond(answer, zone), null)
  assert.equal(respond(Buffer.alloc(5), zone), null)
})

test('TCP: length-prefixed, two queries on one connection', async () => {
  const sock = net.connect(server.port, '127.0.0.1')
  const frames = [query('broker.lab.internal', TYPE.AAAA, 1), query('other.lab.internal', TYPE.A, 2)].map((q) => {
    const p = Buffer.alloc(2)
    p.writeUInt16BE(q.length, 0)
    return Buffer.concat([p, q])
  })
  // Split across writes: the server must reassemble.
  const all = Buffer.concat(frames)
  sock.write(all.subarray(0, 5))
  setTimeout(() => sock.write(all.subarray(5)), 20)
  const replies = await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const out = []
    sock.on('error', reject)
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)))
        buf = buf.subarray(2 + buf.readUInt16BE(0))
      }
      if (out.length === 2) resolve(out)
    })
  })
  sock.destroy()
  assert.equal(replies[0].readUInt16BE(0), 1)
  assert.equal(replies[0][3] & 0xf, RCODE.NOERROR)
  assert.deepEqual([...replies[0].subarray(replies[0].length - 16)], [...addressBytes('::1')])
  assert.equal(replies[1].readUInt16BE(0), 2)
  assert.equal(replies[1][3] & 0xf, RCODE.NXDOMAIN)
})

test('IPv6 addresses in every spelling', () => {
  assert.equal(addressBytes('::1').toString('hex'), '00000000000000000000000000000001')
  assert.equal(addressBytes('fd00::5:1').toString('hex'), 'fd000000000000000000000000050001')
  assert.equal(addressBytes('::ffff:10.0.0.1').toString('hex'), '00000000000000000000ffff0a000001')
  assert.equal(addressBytes('1:2:3:4:5:6:7:8').toString('hex'), '00010002000300040005000600070008')
})

test('bad settings name their variable', () => {
  assert.throws(() => zoneFromEnv({ DNS_A: '::1' }), /DNS_A/)
  assert.throws(() => zoneFromEnv({ DNS_AAAA: '10.0.0.1' }), /DNS_AAAA/)
  assert.throws(() => zoneFromEnv({ DNS_TTL: '-1' }), /DNS_TTL/)
  assert.throws(() => zoneFromEnv({ DNS_NAME: 'bad name' }), /DNS_NAME/)
})
