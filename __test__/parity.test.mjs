// Drop-in parity (SPEC 3): the original package's generic control-protocol exports check exactly the envelope,
// `payload` and `data` being any JSON value; each command's strict payload and data are separate exports.
// (The peer and socket checks: peer-auth.test.mjs.)
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  ControlCommandDataSchemas,
  ControlCommandPayloadSchemas,
  ControlProtocolFailureResponseSchema,
  ControlProtocolRequestError,
  ControlProtocolRequestSchema,
  ControlProtocolResponseSchema,
  ControlProtocolSuccessResponseSchema,
  controlProtocolCommands,
  parseControlCommandData,
  parseControlCommandPayload,
  parseControlCommandRequest,
  parseControlProtocolRequest,
  parseControlProtocolRequestLine,
  parseControlProtocolResponse,
  parseControlProtocolResponseLine,
} from '../index.js'

const error = { code_namespace: 'control_authz', reason_code: 'CTRL_COMMAND_FAILED', message: 'm' }
const fails = (schema, value) => assert.equal(schema.safeParse(value).success, false, JSON.stringify(value))

test('request envelope: payload absent, null or any JSON value, for every command', () => {
  assert.deepEqual(ControlProtocolRequestSchema.parse({ command: 'GetHealth' }), { command: 'GetHealth' })
  assert.deepEqual(parseControlProtocolRequestLine('{"command":"GetHealth"}\n'), { command: 'GetHealth' })
  for (const command of controlProtocolCommands) {
    for (const payload of [null, {}, { anything: [1, 'two', { three: true }] }, 'text', 42, [], false]) {
      const request = { command, payload, id: 'r' }
      assert.deepEqual(parseControlProtocolRequest(request), request)
      assert.deepEqual(parseControlProtocolRequestLine(JSON.stringify(request)), request)
    }
  }
  // The key order is the protocol's, whatever the input's.
  assert.deepEqual(Object.keys(parseControlProtocolRequest({ id: 'x', payload: 1, command: 'Shutdown' })), ['command', 'payload', 'id'])
})

test('request envelope: strict keys, a known command, a string id; failures are CTRL_REQUEST_MALFORMED', () => {
  const malformed = [
    {},
    { payload: {} },
    { command: 'Reboot' },
    { command: 'GetHealth', extra: 1 },
    { command: 'GetHealth', id: 1 },
    { command: 5 },
    [],
    'GetHealth',
    null,
  ]
  for (const request of malformed) {
    fails(ControlProtocolRequestSchema, request)
    try {
      parseControlProtocolRequest(request)
      assert.fail(`accepted ${JSON.stringify(request)}`)
    } catch (e) {
      assert.ok(e instanceof ControlProtocolRequestError)
      assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_MALFORMED')
    }
  }
  assert.throws(() => parseControlProtocolRequestLine('{"command":"GetHealth","command":"Shutdown"}'), ControlProtocolRequestError)
  assert.throws(() => parseControlProtocolRequestLine('{"command":"GetHealth"}\n{"command":"Shutdown"}'), ControlProtocolRequestError)
})

test('success envelope: data absent or any JSON value, not only the per-command shapes', () => {
  for (const command of controlProtocolCommands) {
    for (const data of [undefined, null, {}, { status: 'whatever' }, [1, 2], 'x', 0]) {
      const response = data === undefined ? { ok: true, command } : { ok: true, command, data }
      assert.deepEqual(parseControlProtocolResponse(response), response)
      assert.deepEqual(ControlProtocolSuccessResponseSchema.parse(response), response)
      assert.deepEqual(parseControlProtocolResponseLine(JSON.stringify(response)), response)
      fails(ControlProtocolFailureResponseSchema, response)
    }
  }
  for (const response of [{ ok: true }, { ok: true, command: 'Reboot' }, { ok: true, command: 'GetHealth', extra: 1 }, { ok: 'yes', command: 'GetHealth' }]) {
    fails(ControlProtocolResponseSchema, response)
    fails(ControlProtocolSuccessResponseSchema, response)
  }
})

test('failure envelope: the error is a strict ControlPlaneAuthzEvent whose command is a Command', () => {
  const failure = { ok: false, error: { ...error, command: 'Shutdown' }, id: '9' }
  assert.deepEqual(parseControlProtocolResponse(failure), failure)
  assert.deepEqual(ControlProtocolFailureResponseSchema.parse(failure), failure)
  fails(ControlProtocolSuccessResponseSchema, failure)
  for (const bad of [
    { ok: false, error: { ...error, command: 'Reboot' } },
    { ok: false, error: { ...error, reason_code: 'DENY_DEFAULT' } },
    { ok: false, error: { ...error, reason_code: 'CTRL_AUTH_UNKNOWN_CODE' } },
    { ok: false, error: { ...error, verdict: 'deny', would_block: true } },
    { ok: false, error: { ...error, message: '' } },
  ]) {
    fails(ControlProtocolResponseSchema, bad)
    assert.throws(() => parseControlProtocolResponse(bad), { code: 'ERR_CONTRACT_VALIDATION' })
  }
  fails(ControlProtocolResponseSchema, { ok: false, error, data: {} })
  fails(ControlProtocolResponseSchema, { ok: false })
})

test('per-command payloads: strict, one function and one schema per command', () => {
  assert.equal(parseControlCommandPayload('GetHealth', undefined), undefined)
  assert.equal(parseControlCommandPayload('GetHealth', null), undefined)
  assert.throws(() => parseControlCommandPayload('GetHealth', {}), (e) => {
    assert.equal(e.code, 'ERR_CONTRACT_VALIDATION')
    assert.match(e.issues[0].message, /GetHealth takes no payload/)
    return true
  })
  assert.deepEqual(parseControlCommandPayload('SetGlobalMode', { mode: 'observe' }), { mode: 'observe' })
  assert.deepEqual(
    parseControlCommandPayload('ReplacePolicySnapshot', { broker: [], dns: [{ ip: '10.0.0.53' }], rules: [] }).dns,
    [{ ip: '10.0.0.53', port: 53 }],
  )
  const e = ControlCommandPayloadSchemas.SetGlobalMode.safeParse({ mode: 'audit' })
  assert.equal(e.success, false)
  assert.deepEqual(e.error.issues.map((i) => i.path), [['mode']])
  assert.deepEqual(Object.keys(ControlCommandPayloadSchemas).sort(), [...controlProtocolCommands].sort())
  assert.throws(() => parseControlCommandPayload('Reboot', {}), { code: 'ERR_CONTRACT_VALIDATION' })
  // The strict whole-request parser classifies as the agent does.
  assert.throws(() => parseControlCommandRequest({ command: 'GetHealth', payload: {} }), (err) => err.controlError.reason_code === 'CTRL_REQUEST_PAYLOAD_INVALID')
})

test('per-command data: strict, one function and one schema per command', () => {
  assert.deepEqual(parseControlCommandData('GetHealth', { status: 'ok', degradedReasons: [] }), { status: 'ok', degradedReasons: [] })
  assert.equal(parseControlCommandData('Shutdown', undefined), undefined)
  assert.throws(() => parseControlCommandData('Shutdown', {}), { code: 'ERR_CONTRACT_VALIDATION' })
  const e = ControlCommandDataSchemas.GetHealth.safeParse({ status: 'degraded', degradedReasons: [] })
  assert.equal(e.success, false)
  assert.equal(ControlCommandDataSchemas.SetGlobalMode['~standard'].validate({ globalMode: 'observe' }).value.globalMode, 'observe')
  assert.deepEqual(Object.keys(ControlCommandDataSchemas).sort(), [...controlProtocolCommands].sort())
})
