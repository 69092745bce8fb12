// DataplanePacketEvent through the public API: every rule of SPEC 3 and issue 2, on object, JSON and NDJSON
// input, plus module loading (ESM and CommonJS) and hostile inputs that must never abort the process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { Worker } from 'node:worker_threads'

import {
  ContractValidationError,
  DataplanePacketEventSchema,
  DATAPLANE_PACKET_EVENT_KEYS,
  parseDataplanePacketEvent,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
  serializeDataplanePacketEventToLog,
  dataplaneVerdictReasonCodes,
  controlPlaneAuthzErrorCodes,
} from '../index.js'
import { makeEvents } from '../bench/payloads.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

const KEYS = [
  'code_namespace',
  'reason_code',
  'verdict',
  'would_block',
  'hook',
  'cgroup_id',
  'message',
  'protocol',
  'dst_ip',
  'dst_port',
  'pid',
  'uid',
  'comm',
  'rule_id',
  'dns_name',
  'policy_generation',
  'workload_id',
  'observed_at',
]

const VERDICT = {
  UNMANAGED_ALLOW: 'allow',
  OBSERVE_WOULD_ALLOW: 'allow',
  OBSERVE_WOULD_DENY_EXPLICIT: 'allow',
  OBSERVE_WOULD_DENY_DEFAULT: 'allow',
  ALLOW_EXPLICIT: 'allow',
  ALLOW_BROKER: 'allow',
  ALLOW_DNS: 'allow',
  DENY_EXPLICIT: 'deny',
  DENY_DEFAULT: 'deny',
  DENY_DEGRADED_FAIL_CLOSED: 'deny',
  ALLOW_DEGRADED_FAIL_OPEN: 'allow',
  DENY_SOCKET_CREATE: 'deny',
  OBSERVE_WOULD_DENY_SOCKET_CREATE: 'allow',
  DENY_PACKET_EGRESS: 'deny',
  OBSERVE_WOULD_DENY_PACKET_EGRESS: 'allow',
  DENY_DNS_QUERY: 'deny',
  OBSERVE_WOULD_DENY_DNS_QUERY: 'allow',
}
const WOULD_BLOCK = {
  OBSERVE_WOULD_ALLOW: false,
  OBSERVE_WOULD_DENY_EXPLICIT: true,
  OBSERVE_WOULD_DENY_DEFAULT: true,
  OBSERVE_WOULD_DENY_SOCKET_CREATE: true,
  OBSERVE_WOULD_DENY_PACKET_EGRESS: true,
  OBSERVE_WOULD_DENY_DNS_QUERY: true,
}

function minimal(code) {
  const e = { code_namespace: 'dataplane_verdict', reason_code: code, verdict: VERDICT[code] }
  if (code in WOULD_BLOCK) e.would_block = WOULD_BLOCK[code]
  return e
}

function full() {
  return {
    code_namespace: 'dataplane_verdict',
    reason_code: 'DENY_EXPLICIT',
    verdict: 'deny',
    hook: 'connect6',
    cgroup_id: '18446744073709551615',
    message: 'matched deny rule',
    protocol: 'tcp',
    dst_ip: '2001:db8::9',
    dst_port: 443,
    pid: 4242,
    uid: 1000,
    comm: 'curl',
    rule_id: 'rule-17',
    dns_name: 'api.github.com',
    policy_generation: 9007199254740991,
    workload_id: 'wl-payments',
    observed_at: '2024-05-01T12:00:00.123456789Z',
  }
}

/** The [path, code] pairs of the issues `fn` throws; fails if it does not throw a ContractValidationError. */
function issuesOf(fn) {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof ContractValidationError, `not a ContractValidationError: ${error}`)
    assert.equal(error.code, 'ERR_CONTRACT_VALIDATION')
    assert.equal(error.schema, 'DataplanePacketEvent')
    assert.ok(error.issues.length > 0)
    return error.issues.map((i) => [i.path.join('.'), i.code])
  }
  assert.fail('expected a ContractValidationError')
}

function errorOf(fn) {
  try {
    fn()
  } catch (error) {
    return error
  }
  assert.fail('expected an error')
}

/** Runs `check(parse)` with each parser that takes an object, directly or as JSON text/bytes/NDJSON. */
const PARSERS = {
  object: (e) => parseDataplanePacketEvent(e),
  json: (e) => parseDataplanePacketEventJson(JSON.stringify(e)),
  buffer: (e) => parseDataplanePacketEventJson(Buffer.from(JSON.stringify(e))),
  ndjson: (e) => {
    const { records, errors } = parseDataplanePacketEventNdjson(`\n${JSON.stringify(e)}\r\n`)
    if (errors.length > 0) {
      assert.equal(errors[0].line, 2)
      throw new ContractValidationError('DataplanePacketEvent', errors[0].issues)
    }
    assert.equal(records.length, 1)
    return records[0]
  },
}

function eachParser(name, check) {
  for (const [kind, parse] of Object.entries(PARSERS)) test(`${name} [${kind}]`, () => check(parse))
}

eachParser('accepts every dataplane code with its verdict and would_block', (parse) => {
  // SPEC 2: the list only grows (values 1..11 of the original, then 12.. appended); every code is listed here.
  assert.deepEqual([...dataplaneVerdictReasonCodes], Object.keys(VERDICT))
  for (const code of dataplaneVerdictReasonCodes) {
    assert.deepEqual(parse(minimal(code)), minimal(code), code)
  }
})

eachParser('accepts a full event and returns keys in table order', (parse) => {
  const shuffled = Object.fromEntries(Object.entries(full()).reverse())
  const out = parse(shuffled)
  assert.deepEqual(out, full())
  assert.deepEqual(
    Object.keys(out),
    KEYS.filter((k) => k !== 'would_block'),
  )
  const observe = parse({ ...minimal('OBSERVE_WOULD_ALLOW'), dst_port: 1, hook: 'sendmsg4' })
  assert.deepEqual(Object.keys(observe), ['code_namespace', 'reason_code', 'verdict', 'would_block', 'hook', 'dst_port'])
})

eachParser('rejects a control-plane code, saying so', (parse) => {
  for (const code of controlPlaneAuthzErrorCodes) {
    const err = errorOf(() => parse({ ...full(), reason_code: code }))
    assert.equal(err.issues.length, 1, JSON.stringify(err.issues))
    assert.deepEqual(err.issues[0].path, ['reason_code'])
    assert.equal(err.issues[0].code, 'invalid_value')
    assert.match(err.issues[0].message, /control_authz error code/)
  }
})

eachParser('rejects unknown codes, saying so, and skips cross-field checks', (parse) => {
  for (const code of ['UNSPECIFIED', 'deny_default', 'DENY_EVERYTHING', '']) {
    const err = errorOf(() => parse({ ...full(), reason_code: code, verdict: 'allow', would_block: true }))
    assert.deepEqual(
      err.issues.map((i) => [i.path.join('.'), i.code]),
      [['reason_code', 'invalid_value']],
      code,
    )
    assert.match(err.issues[0].message, /unknown dataplane_verdict reason code/)
  }
})

eachParser('code_namespace must be dataplane_verdict', (parse) => {
  assert.deepEqual(issuesOf(() => parse({ ...full(), code_namespace: 'control_authz' })), [['code_namespace', 'invalid_value']])
  const { code_namespace: _, ...rest } = full()
  assert.deepEqual(issuesOf(() => parse(rest)), [['code_namespace', 'invalid_type']])
})

eachParser('verdict must equal the code verdict', (parse) => {
  assert.deepEqual(issuesOf(() => parse({ ...full(), verdict: 'allow' })), [['verdict', 'custom']])
  assert.deepEqual(issuesOf(() => parse({ ...minimal('OBSERVE_WOULD_DENY_DEFAULT'), verdict: 'deny' })), [['verdict', 'custom']])
  assert.deepEqual(issuesOf(() => parse({ ...minimal('ALLOW_DNS'), verdict: 'deny' })), [['verdict', 'custom']])
  assert.deepEqual(issuesOf(() => parse({ ...full(), verdict: 'block' })), [['verdict', 'invalid_value']])
  const { verdict: _, ...rest } = full()
  assert.deepEqual(issuesOf(() => parse(rest)), [['verdict', 'invalid_type']])
})

eachParser('would_block: required with the exact value for observe codes, forbidden otherwise', (parse) => {
  for (const [code, want] of Object.entries(WOULD_BLOCK)) {
    const { would_block: _, ...without } = minimal(code)
    assert.deepEqual(issuesOf(() => parse(without)), [['would_block', 'custom']], `${code} missing`)
    assert.deepEqual(issuesOf(() => parse({ ...without, would_block: !want })), [['would_block', 'custom']], `${code} flipped`)
    assert.deepEqual(issuesOf(() => parse({ ...without, would_block: String(want) })), [['would_block', 'invalid_type']])
  }
  for (const code of dataplaneVerdictReasonCodes.filter((c) => !(c in WOULD_BLOCK))) {
    for (const wb of [true, false]) {
      const err = errorOf(() => parse({ ...minimal(code), would_block: wb }))
      assert.deepEqual(err.issues.map((i) => [i.path.join('.'), i.code]), [['would_block', 'custom']], code)
      assert.match(err.issues[0].message, /only allowed for the OBSERVE_\* reason codes/)
    }
  }
  // would_block false is kept in the output.
  assert.equal(parse(minimal('OBSERVE_WOULD_ALLOW')).would_block, false)
})

eachParser('unknown keys are one unrecognized_keys issue naming them all, after the field issues', (parse) => {
  const err = errorOf(() => parse({ ...full(), zeta: 1, verdict: 'allow', alpha: { nested: true } }))
  assert.deepEqual(
    err.issues.map((i) => [i.path.join('.'), i.code]),
    [
      ['verdict', 'custom'],
      ['', 'unrecognized_keys'],
    ],
  )
  assert.match(err.issues[1].message, /"zeta"/)
  assert.match(err.issues[1].message, /"alpha"/)
})

test('a known key set to undefined is not an unknown key (object input)', () => {
  assert.deepEqual(parseDataplanePacketEvent({ ...minimal('ALLOW_DNS'), hook: undefined, pid: undefined }), minimal('ALLOW_DNS'))
  assert.deepEqual(issuesOf(() => parseDataplanePacketEvent({ ...minimal('ALLOW_DNS'), hook: undefined, nope: undefined })), [
    ['', 'unrecognized_keys'],
  ])
})

eachParser('wrong types are invalid_type issues, null is not absent', (parse) => {
  const cases = {
    code_namespace: [1, null, true],
    reason_code: [8, null, ['DENY_DEFAULT']],
    verdict: [false, null, {}],
    would_block: ['true', 1, null],
    hook: [4, null],
    cgroup_id: [123, null],
    message: [1, null, {}],
    protocol: [6, null],
    dst_ip: [167772161, null],
    dst_port: ['443', null, true],
    pid: ['1', null],
    uid: [[0], null],
    comm: [7, null],
    rule_id: [17, null],
    dns_name: [['api.github.com'], null],
    policy_generation: ['1', null],
    workload_id: [false, null],
    observed_at: [1714564800000, null],
  }
  for (const [key, values] of Object.entries(cases)) {
    for (const v of values) {
      const got = issuesOf(() => parse({ ...full(), [key]: v }))
      assert.deepEqual(got, [[key, 'invalid_type']], `${key}=${JSON.stringify(v)}`)
    }
  }
})

test('JavaScript-only values are type errors (object input)', () => {
  for (const v of [10n, Symbol('x'), () => 1, NaN, Infinity, -Infinity]) {
    assert.deepEqual(issuesOf(() => parseDataplanePacketEvent({ ...full(), pid: v })), [['pid', 'invalid_type']], String(v))
  }
  assert.deepEqual(parseDataplanePacketEvent({ ...full(), pid: -0 }).pid, -0)
})

eachParser('every issue is collected, not only the first', (parse) => {
  const got = issuesOf(() =>
    parse({
      code_namespace: 'dataplane',
      reason_code: 'DENY_DEFAULT',
      verdict: 'allow',
      would_block: false,
      hook: 'bind4',
      cgroup_id: '007',
      protocol: 'sctp',
      dst_ip: '010.0.0.1',
      dst_port: 65536,
      pid: -1,
      uid: 1.5,
      comm: 'x'.repeat(17),
      policy_generation: 2 ** 53,
      observed_at: '2023-02-29T00:00:00Z',
      extra: 1,
    }),
  )
  assert.deepEqual(got, [
    ['code_namespace', 'invalid_value'],
    ['verdict', 'custom'],
    ['would_block', 'custom'],
    ['hook', 'invalid_value'],
    ['cgroup_id', 'invalid_format'],
    ['protocol', 'invalid_value'],
    ['dst_ip', 'invalid_format'],
    ['dst_port', 'too_big'],
    ['pid', 'too_small'],
    ['uid', 'invalid_type'],
    ['comm', 'too_big'],
    ['policy_generation', 'too_big'],
    ['observed_at', 'invalid_format'],
    ['', 'unrecognized_keys'],
  ])
})

eachParser('cgroup_id: decimal u64 text without leading zeros', (parse) => {
  for (const ok of ['0', '1', '4294967296', '18446744073709551615']) assert.equal(parse({ ...full(), cgroup_id: ok }).cgroup_id, ok)
  for (const [bad, code] of [
    ['', 'invalid_format'],
    ['00', 'invalid_format'],
    ['0123', 'invalid_format'],
    ['-1', 'invalid_format'],
    ['+1', 'invalid_format'],
    ['1e3', 'invalid_format'],
    [' 1', 'invalid_format'],
    ['١', 'invalid_format'],
    ['18446744073709551616', 'too_big'],
    ['99999999999999999999999', 'too_big'],
  ]) {
    assert.deepEqual(issuesOf(() => parse({ ...full(), cgroup_id: bad })), [['cgroup_id', code]], bad)
  }
})

eachParser('dst_ip: canonical IPv4/IPv6 text only', (parse) => {
  for (const ok of ['10.0.0.1', '0.0.0.0', '255.255.255.255', '::', '::1', '2001:db8::1', '::ffff:10.0.0.1', 'fe80::1:2']) {
    assert.equal(parse({ ...full(), dst_ip: ok }).dst_ip, ok)
  }
  for (const bad of [
    '010.0.0.1',
    '10.0.0.256',
    '10.0.0',
    '::FFFF:10.0.0.1',
    '0:0::1',
    '2001:DB8::1',
    '2001:db8:0:0:0:0:0:1',
    '2001:0db8::1',
    'fe80::1%eth0',
    '10.0.0.1/8',
    ' 10.0.0.1',
    'example.com',
    '',
  ]) {
    assert.deepEqual(issuesOf(() => parse({ ...full(), dst_ip: bad })), [['dst_ip', 'invalid_format']], bad)
  }
  assert.match(errorOf(() => parse({ ...full(), dst_ip: '::FFFF:10.0.0.1' })).issues[0].message, /"::ffff:10\.0\.0\.1"/)
})

eachParser('integer fields: bounds, integrality, 1.0 is 1', (parse) => {
  for (const [key, max] of [
    ['dst_port', 65535],
    ['pid', 4294967295],
    ['uid', 4294967295],
    ['policy_generation', Number.MAX_SAFE_INTEGER],
  ]) {
    assert.equal(parse({ ...full(), [key]: 0 })[key], 0)
    assert.equal(parse({ ...full(), [key]: max })[key], max)
    assert.deepEqual(issuesOf(() => parse({ ...full(), [key]: max + 1 })), [[key, 'too_big']], key)
    assert.deepEqual(issuesOf(() => parse({ ...full(), [key]: -1 })), [[key, 'too_small']], key)
    assert.deepEqual(issuesOf(() => parse({ ...full(), [key]: 0.5 })), [[key, 'invalid_type']], key)
  }
})

test('JSON numbers written as 1.0 or 1e2 are integers', () => {
  const text = JSON.stringify(full()).replace('"dst_port":443', '"dst_port":443.0').replace('"pid":4242', '"pid":4.242e3')
  const e = parseDataplanePacketEventJson(text)
  assert.equal(e.dst_port, 443)
  assert.equal(e.pid, 4242)
})

eachParser('comm: at most 16 bytes of UTF-8', (parse) => {
  assert.equal(parse({ ...full(), comm: '0123456789abcdef' }).comm, '0123456789abcdef')
  assert.equal(parse({ ...full(), comm: 'éééééééé' }).comm, 'éééééééé') // 16 bytes
  assert.deepEqual(issuesOf(() => parse({ ...full(), comm: '0123456789abcdefg' })), [['comm', 'too_big']])
  assert.deepEqual(issuesOf(() => parse({ ...full(), comm: 'ééééééééx' })), [['comm', 'too_big']]) // 9 chars, 17 bytes
})

eachParser('observed_at: RFC 3339 with up to nanoseconds and real dates', (parse) => {
  for (const ok of [
    '2024-05-01T12:00:00Z',
    '2024-05-01t12:00:00z',
    '2024-05-01T12:00:00.1+02:00',
    '2024-05-01T12:00:00.123456789-05:30',
    '2024-02-29T00:00:00Z',
    '2000-02-29T00:00:00Z',
    '2016-12-31T23:59:60Z',
  ]) {
    assert.equal(parse({ ...full(), observed_at: ok }).observed_at, ok)
  }
  for (const bad of [
    '2023-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2024-04-31T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-05-01T24:00:00Z',
    '2024-05-01T12:60:00Z',
    '2024-05-01T12:00:61Z',
    '2024-05-01T12:00:00',
    '2024-05-01 12:00:00Z',
    '2024-05-01T12:00:00.Z',
    '2024-05-01T12:00:00.1234567891Z',
    '2024-05-01T12:00:00+0200',
    '2024-05-01T12:00:00+24:00',
    '2024-05-01',
    '',
  ]) {
    assert.deepEqual(issuesOf(() => parse({ ...full(), observed_at: bad })), [['observed_at', 'invalid_format']], bad)
  }
})

eachParser('optional strings may be empty when parsing', (parse) => {
  const e = { ...minimal('ALLOW_BROKER'), message: '', comm: '', rule_id: '', dns_name: '', workload_id: '' }
  assert.deepEqual(parse(e), e)
})

test('log record: table order, first key code_namespace, would_block false kept, empty strings dropped', () => {
  const input = Object.fromEntries(
    Object.entries({ ...full(), reason_code: 'OBSERVE_WOULD_ALLOW', verdict: 'allow', would_block: false, message: '', workload_id: '' }).reverse(),
  )
  const log = serializeDataplanePacketEventToLog(input)
  assert.equal(Object.keys(log)[0], 'code_namespace')
  assert.deepEqual(
    Object.keys(log),
    KEYS.filter((k) => k !== 'message' && k !== 'workload_id'),
  )
  assert.equal(log.would_block, false)
  assert.equal(Object.getPrototypeOf(log), Object.prototype)
  assert.notEqual(log, input)
  const onlyEmpty = serializeDataplanePacketEventToLog({ ...minimal('DENY_DEFAULT'), message: '', comm: '', rule_id: '', dns_name: '', workload_id: '' })
  assert.deepEqual(onlyEmpty, minimal('DENY_DEFAULT'))
  // Non-empty strings are kept, including whitespace.
  assert.equal(serializeDataplanePacketEventToLog({ ...minimal('DENY_DEFAULT'), message: ' ' }).message, ' ')
})

test('log record: validates first and throws on invalid events', () => {
  assert.deepEqual(issuesOf(() => serializeDataplanePacketEventToLog({ ...full(), verdict: 'allow' })), [['verdict', 'custom']])
  assert.deepEqual(issuesOf(() => serializeDataplanePacketEventToLog(null)), [['', 'invalid_type']])
})

test('non-objects are rejected at the root', () => {
  for (const [v, name] of [
    [null, 'null'],
    [undefined, 'undefined'],
    ['{}', 'string'],
    [1, 'number'],
    [[], 'array'],
    [true, 'boolean'],
  ]) {
    const err = errorOf(() => parseDataplanePacketEvent(v))
    assert.deepEqual(err.issues.map((i) => [i.path.join('.'), i.code]), [['', 'invalid_type']])
    assert.match(err.issues[0].message, new RegExp(`received ${name}$`))
  }
  for (const [text, name] of [
    ['[]', 'array'],
    ['null', 'null'],
    ['"x"', 'string'],
    ['1', 'number'],
  ]) {
    assert.match(errorOf(() => parseDataplanePacketEventJson(text)).issues[0].message, new RegExp(`received ${name}$`))
  }
})

test('schema: parse and safeParse', () => {
  assert.deepEqual(DataplanePacketEventSchema.parse(full()), full())
  assert.deepEqual(DataplanePacketEventSchema.safeParse(full()), { success: true, data: full() })
  const bad = DataplanePacketEventSchema.safeParse({ ...full(), verdict: 'allow' })
  assert.equal(bad.success, false)
  assert.ok(bad.error instanceof ContractValidationError)
  assert.equal(bad.error.issues[0].code, 'custom')
  assert.equal(DataplanePacketEventSchema.name, 'DataplanePacketEvent')
  assert.deepEqual([...DATAPLANE_PACKET_EVENT_KEYS], KEYS)
})

test('byte twins: string, Buffer and Uint8Array views give the same event', () => {
  const text = JSON.stringify(full())
  const bytes = Buffer.from(`xx${text}yy`)
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset + 2, bytes.length - 4)
  assert.deepEqual(parseDataplanePacketEventJson(text), full())
  assert.deepEqual(parseDataplanePacketEventJson(Buffer.from(text)), full())
  assert.deepEqual(parseDataplanePacketEventJson(view), full())
  assert.deepEqual(parseDataplanePacketEventJson(` \n\t${text}\n `), full())
})

test('byte twins: other input types are a TypeError', () => {
  for (const v of [42, null, undefined, {}, [1], new Uint16Array(2), new ArrayBuffer(4)]) {
    const err = errorOf(() => parseDataplanePacketEventJson(v))
    assert.ok(err instanceof TypeError, String(v))
    assert.equal(err.code, 'ERR_INVALID_ARG_TYPE')
    assert.ok(errorOf(() => parseDataplanePacketEventNdjson(v)) instanceof TypeError)
  }
})

test('invalid JSON is one invalid_json issue with line and column', () => {
  for (const bad of ['', '{', '{"a":1,}', '{} {}', "{'a':1}", '\uFEFF{}', '{"code_namespace":"dataplane_verdict"\n,]']) {
    const err = errorOf(() => parseDataplanePacketEventJson(bad))
    assert.ok(err instanceof ContractValidationError, bad)
    assert.equal(err.issues.length, 1)
    assert.equal(err.issues[0].code, 'invalid_json')
    assert.match(err.issues[0].message, /line \d+ column \d+/)
  }
  assert.match(errorOf(() => parseDataplanePacketEventJson('{\n\n  "a": tru }')).issues[0].message, /line 3 column/)
  assert.equal(errorOf(() => parseDataplanePacketEventJson(Buffer.from([0x7b, 0x22, 0xff, 0x22]))).issues[0].code, 'invalid_json')
  assert.equal(errorOf(() => parseDataplanePacketEventJson('['.repeat(100000))).issues[0].code, 'invalid_json')
})

test('duplicate keys are rejected from bytes', () => {
  const text = JSON.stringify(minimal('DENY_DEFAULT')).replace('}', ',"verdict":"deny"}')
  assert.deepEqual(issuesOf(() => parseDataplanePacketEventJson(text)), [['verdict', 'custom']])
})

test('lone surrogates are rejected on every path (documented choice)', () => {
  // JSON escape: serde_json refuses it although JSON.parse accepts it.
  const escaped = JSON.stringify(full()).replace('"matched deny rule"', '"bad \\ud800 text"')
  assert.equal(JSON.parse(escaped).message, 'bad \ud800 text')
  assert.deepEqual(issuesOf(() => parseDataplanePacketEventJson(escaped)), [['', 'invalid_json']])
  // A raw lone surrogate inside a JS string input.
  const raw = JSON.stringify(full()).replace('"matched deny rule"', '"bad \ud800 text"')
  assert.deepEqual(issuesOf(() => parseDataplanePacketEventJson(raw)), [['', 'invalid_json']])
  // The object path agrees: parse(JSON.parse(text)) rejects too.
  assert.deepEqual(issuesOf(() => parseDataplanePacketEvent(JSON.parse(escaped))), [['message', 'invalid_format']])
  assert.deepEqual(issuesOf(() => parseDataplanePacketEvent({ ...full(), workload_id: '\udc00' })), [['workload_id', 'invalid_format']])
  // Paired surrogates and a genuine U+FFFD are fine.
  assert.equal(parseDataplanePacketEvent({ ...full(), message: '😀 \ufffd' }).message, '😀 \ufffd')
  assert.equal(parseDataplanePacketEventJson(JSON.stringify({ ...full(), message: '😀 \ufffd' })).message, '😀 \ufffd')
  const pair = JSON.stringify(full()).replace('"matched deny rule"', '"\\ud83d\\ude00"')
  assert.equal(parseDataplanePacketEventJson(pair).message, '😀')
  // NDJSON: only the line holding it is rejected.
  const batch = parseDataplanePacketEventNdjson(`${JSON.stringify(full())}\n${raw}\n${JSON.stringify(minimal('ALLOW_DNS'))}`)
  assert.equal(batch.records.length, 2)
  assert.deepEqual(
    batch.errors.map((e) => [e.line, e.issues[0].code]),
    [[2, 'invalid_json']],
  )
})

test('strings with escapes and non-ASCII text come back exactly (offset mapping)', () => {
  const strings = ['é', '😀 emoji', 'quote " and \\ backslash', 'tab\there\nnewline', '\u0000 nul', 'ü\u00e9€', '']
  for (const s of strings) {
    const e = { ...full(), message: s, rule_id: `r-${s}`, workload_id: `${s}${s}` }
    assert.deepEqual(parseDataplanePacketEventJson(JSON.stringify(e)), e, JSON.stringify(s))
    assert.deepEqual(parseDataplanePacketEventJson(Buffer.from(JSON.stringify(e))), e)
  }
  // \u escapes of ASCII and non-ASCII characters.
  const text = JSON.stringify(full()).replace('"wl-payments"', '"w\\u006c-\\u00e9"')
  assert.equal(parseDataplanePacketEventJson(text).workload_id, 'wl-é')
  // Non-ASCII before every sliced field shifts the offsets of all later strings.
  const e = { ...full(), message: '€€€ 😀😀 ééé' }
  const lines = [e, full(), { ...e, comm: 'ü' }, minimal('DENY_DEFAULT'), e]
  const ndjson = lines.map((x) => JSON.stringify(x)).join('\n')
  assert.deepEqual(parseDataplanePacketEventNdjson(ndjson).records, lines)
  assert.deepEqual(parseDataplanePacketEventNdjson(Buffer.from(ndjson)).records, lines)
})

test('NDJSON: records in order, errors with 1-based line numbers, blank lines, CRLF, last line', () => {
  const a = JSON.stringify(full())
  const b = JSON.stringify(minimal('OBSERVE_WOULD_DENY_EXPLICIT'))
  const bad = JSON.stringify({ ...full(), verdict: 'allow' })
  const text = `${a}\r\n\n   \n${bad}\n{oops\r\n\t\r\n${b}\n${JSON.stringify([1])}\n${b}`
  for (const input of [text, Buffer.from(text), new Uint8Array(Buffer.from(text))]) {
    const { records, errors } = parseDataplanePacketEventNdjson(input)
    assert.deepEqual(records, [full(), minimal('OBSERVE_WOULD_DENY_EXPLICIT'), minimal('OBSERVE_WOULD_DENY_EXPLICIT')])
    assert.deepEqual(
      errors.map((e) => [e.line, e.issues.map((i) => [i.path.join('.'), i.code])]),
      [
        [4, [['verdict', 'custom']]],
        [5, [['', 'invalid_json']]],
        [8, [['', 'invalid_type']]],
      ],
    )
  }
  assert.deepEqual(parseDataplanePacketEventNdjson(''), { records: [], errors: [] })
  assert.deepEqual(parseDataplanePacketEventNdjson('\n\r\n \n'), { records: [], errors: [] })
  assert.equal(parseDataplanePacketEventNdjson(`${a}\n`).records.length, 1)
})

test('NDJSON: a Buffer with invalid UTF-8 on one line still returns the other lines exactly', () => {
  const good = { ...full(), message: 'ünïcödé after the bad line' }
  const buf = Buffer.concat([
    Buffer.from('{"message":"'),
    Buffer.from([0xff, 0xfe, 0xc3]),
    Buffer.from('"}\n'),
    Buffer.from(JSON.stringify(good)),
  ])
  const { records, errors } = parseDataplanePacketEventNdjson(buf)
  assert.deepEqual(records, [good])
  assert.deepEqual(
    errors.map((e) => [e.line, e.issues[0].code]),
    [[1, 'invalid_json']],
  )
})

test('NDJSON: a batch of 1,000 generated events matches the per-event parsers', () => {
  const events = makeEvents(1000, 7)
  const { records, errors } = parseDataplanePacketEventNdjson(events.map((e) => JSON.stringify(e)).join('\n'))
  assert.equal(errors.length, 0)
  assert.deepEqual(records, events)
})

test('object, JSON and NDJSON paths agree on generated events and on mutated ones', () => {
  const events = makeEvents(300, 99)
  const mutations = [
    (e) => ({ ...e, verdict: e.verdict === 'allow' ? 'deny' : 'allow' }),
    (e) => ({ ...e, would_block: e.would_block === undefined ? true : !e.would_block }),
    (e) => ({ ...e, surplus: 1 }),
    (e) => ({ ...e, dst_port: 65536 }),
    (e) => ({ ...e, pid: -1 }),
    (e) => ({ ...e, dst_ip: e.dst_ip.includes(':') ? e.dst_ip.toUpperCase() : `0${e.dst_ip}` }),
    (e) => ({ ...e, cgroup_id: `0${e.cgroup_id}` }),
  ]
  for (const e of events) {
    assert.deepEqual(parseDataplanePacketEvent(e), e)
    assert.deepEqual(parseDataplanePacketEventJson(JSON.stringify(e)), e)
    for (const m of mutations) {
      const bad = m(e)
      const a = issuesOf(() => parseDataplanePacketEvent(bad))
      const b = issuesOf(() => parseDataplanePacketEventJson(JSON.stringify(bad)))
      assert.deepEqual(a, b, JSON.stringify(bad))
    }
  }
})

test('hostile inputs never abort the process', () => {
  // Run in a child so an abort (a panic crossing into Node) shows up as a failed exit status, not a dead runner.
  const script = `
    const m = require(${JSON.stringify(ROOT)})
    const tryIt = (f) => { try { f() } catch (e) { if (!(e instanceof m.ContractValidationError) && !(e instanceof TypeError) && e.message !== 'getter') throw e } }
    let seed = 1
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32)
    const base = JSON.stringify({ code_namespace: 'dataplane_verdict', reason_code: 'OBSERVE_WOULD_ALLOW', verdict: 'allow', would_block: false, message: 'é😀', dst_ip: '::1', observed_at: '2024-01-01T00:00:00Z' })
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.from(base)
      for (let k = 0; k < 1 + (i % 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256)
      tryIt(() => m.parseDataplanePacketEventJson(b))
      tryIt(() => m.parseDataplanePacketEventNdjson(Buffer.concat([b, Buffer.from('\\n'), b])))
      tryIt(() => m.parseDataplanePacketEventJson(b.toString('latin1')))
    }
    const big = { code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'deny', message: 'x'.repeat(4 << 20), comm: '\\ud800'.repeat(1000) }
    tryIt(() => m.parseDataplanePacketEvent(big))
    tryIt(() => m.parseDataplanePacketEventJson(JSON.stringify(big)))
    const many = {}; for (let i = 0; i < 10000; i++) many['k' + i] = i
    tryIt(() => m.parseDataplanePacketEvent(many))
    tryIt(() => m.parseDataplanePacketEvent(new Proxy({}, { get() { throw new Error('getter') } })))
    tryIt(() => m.parseDataplanePacketEvent(Object.create(null)))
    tryIt(() => m.parseDataplanePacketEvent(new Map()))
    tryIt(() => m.parseDataplanePacketEvent(Object.freeze({ reason_code: { toString() { throw new Error('getter') } } })))
    tryIt(() => m.parseDataplanePacketEventJson('{"a":' + '['.repeat(200) + ']'.repeat(200) + '}'))
    tryIt(() => m.parseDataplanePacketEventJson(new Uint8Array(0)))
    tryIt(() => m.parseDataplanePacketEventNdjson('\\n'.repeat(100000)))
    console.log('survived')
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'survived')
})

test('inherited enumerable keys count as keys of the object', () => {
  const proto = { surplus: 1 }
  const e = Object.assign(Object.create(proto), minimal('DENY_DEFAULT'))
  assert.deepEqual(issuesOf(() => parseDataplanePacketEvent(e)), [['', 'unrecognized_keys']])
})

test('ESM named import from the package root works', () => {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { parseDataplanePacketEvent, parseDataplanePacketEventJson, DataplanePacketEventSchema } from '@broker-interceptor/interceptor-ebpf'
       const e = parseDataplanePacketEventJson('{"code_namespace":"dataplane_verdict","reason_code":"ALLOW_DNS","verdict":"allow"}')
       console.log(parseDataplanePacketEvent(e).reason_code, typeof DataplanePacketEventSchema.safeParse)`,
    ],
    { cwd: ROOT, encoding: 'utf8' },
  )
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'ALLOW_DNS function')
})

test('CommonJS require works', () => {
  const require = createRequire(import.meta.url)
  const cjs = require('..')
  assert.equal(typeof cjs.parseDataplanePacketEventNdjson, 'function')
  assert.deepEqual(cjs.serializeDataplanePacketEventToLog(minimal('ALLOW_DNS')), minimal('ALLOW_DNS'))
  const r = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(ROOT)}).parseDataplanePacketEvent(${JSON.stringify(minimal('DENY_DEFAULT'))}).verdict)`], {
    encoding: 'utf8',
  })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'deny')
})

test('works in a worker thread (one fast-path instance per environment)', async () => {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads')
     const m = require(${JSON.stringify(ROOT)})
     const e = m.parseDataplanePacketEventJson(${JSON.stringify(JSON.stringify(full()))})
     const b = m.parseDataplanePacketEventNdjson(${JSON.stringify(JSON.stringify(full()) + '\n')})
     parentPort.postMessage([e, b.records.length])`,
    { eval: true },
  )
  const [e, n] = await new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  await worker.terminate()
  assert.deepEqual(e, full())
  assert.equal(n, 1)
  // The main thread's instance is unaffected.
  assert.deepEqual(parseDataplanePacketEventJson(JSON.stringify(full())), full())
})

test('internal fast path refuses an input that aliases its output slots', () => {
  const require = createRequire(import.meta.url)
  const { parseJson } = require('../binding.js').dataplaneEventFastPaths()
  const slots = new Float64Array(21)
  const err = errorOf(() => parseJson(new Uint8Array(slots.buffer, 8, 16), slots))
  assert.ok(err instanceof TypeError)
  assert.ok(errorOf(() => parseJson('{}', new Float64Array(3))) instanceof TypeError)
  assert.ok(errorOf(() => parseJson('{}', new Uint8Array(200))) instanceof TypeError)
})

test('differential: parseJson(text) agrees with parse(JSON.parse(text)) on mutated texts', () => {
  // Byte-level mutations of real events (with non-ASCII text, so offsets are exercised): whenever JSON.parse
  // accepts the text, both paths must give the same event or the same issues; when it refuses, ours gives one
  // invalid_json issue. The documented exceptions are duplicate keys and lone surrogates.
  let seed = 12345
  const rnd = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n)
  const alphabet = '{}[]":,.0123456789-+eEtfnul\\ abcxyzé😀'
  const base = makeEvents(50, 5).map((e, i) => JSON.stringify(i % 3 ? e : { ...e, message: 'ünï 😀 "q"' }))
  let agreedOk = 0
  let agreedErr = 0
  for (let round = 0; round < 6000; round++) {
    let text = base[round % base.length]
    for (let k = 0; k <= rnd(3); k++) {
      const at = rnd(text.length)
      const op = rnd(3)
      const ch = [...alphabet][rnd([...alphabet].length)]
      text = op === 0 ? text.slice(0, at) + ch + text.slice(at + 1) : op === 1 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + ch + text.slice(at)
    }
    let value
    try {
      value = JSON.parse(text)
    } catch {
      assert.deepEqual(issuesOf(() => parseDataplanePacketEventJson(text)), [['', 'invalid_json']], text)
      agreedErr++
      continue
    }
    let ours
    let theirs
    try {
      ours = { ok: parseDataplanePacketEventJson(text) }
    } catch (e) {
      assert.ok(e instanceof ContractValidationError, String(e))
      ours = { issues: e.issues }
    }
    try {
      theirs = { ok: parseDataplanePacketEvent(value) }
    } catch (e) {
      assert.ok(e instanceof ContractValidationError, String(e))
      theirs = { issues: e.issues }
    }
    // Documented differences: duplicate keys, lone surrogates, and numbers beyond f64 (JSON.parse makes them
    // Infinity, which the validator then rejects too; serde_json refuses the text).
    const documentedException =
      ours.issues?.some(
        (i) =>
          i.message.startsWith('duplicate key') ||
          (i.code === 'invalid_json' && /surrogate|number out of range/.test(i.message)),
      ) ?? false
    if (documentedException && process.env.SHOW_COUNTS) console.log(ours.issues.map((i) => i.message))
    if (!documentedException) {
      assert.deepEqual(ours, theirs, text)
      if (ours.ok) agreedOk++
      else agreedErr++
    }
  }
  if (process.env.SHOW_COUNTS) console.log({ agreedOk, agreedErr })
  // The mutations must exercise both outcomes, or the test proves nothing.
  assert.ok(agreedOk > 100, `only ${agreedOk} accepted mutations`)
  assert.ok(agreedErr > 1000, `only ${agreedErr} rejected mutations`)
})
