import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  ContractValidationError,
  ControlPlaneAuthzEventSchema,
  ControlProtocolCommandSchema,
  ControlProtocolErrorSchema,
  ControlProtocolFailureResponseSchema,
  ControlProtocolRequestError,
  ControlCommandRequestSchema,
  ControlCommandResponseSchema,
  ControlCommandDataSchemas,
  ControlCommandPayloadSchemas,
  ControlProtocolSuccessResponseSchema,
  controlProtocolCommands,
  parseControlPlaneAuthzEvent,
  parseControlCommandData,
  parseControlCommandPayload,
  parseControlCommandRequest,
  parseControlCommandRequestLine,
  parseControlCommandResponse,
  parseControlCommandResponseLine,
  serializeControlPlaneAuthzErrorToLog,
} from '../index.js'

const ev = (extra) => ({ code_namespace: 'control_authz', reason_code: 'CTRL_COMMAND_FAILED', message: 'm', ...extra })
const rejection = (fn) => {
  try {
    fn()
  } catch (e) {
    assert.ok(e instanceof ControlProtocolRequestError)
    assert.ok(e instanceof ContractValidationError)
    return e
  }
  assert.fail('expected rejection')
}

test('ControlPlaneAuthzEvent: codes, namespaces, keys, types', () => {
  assert.deepEqual(parseControlPlaneAuthzEvent(ev({ command: 'Shutdown' })), ev({ command: 'Shutdown' }))
  const msg = (input) => ControlPlaneAuthzEventSchema.safeParse(input).error?.issues.map((i) => i.message)
  assert.deepEqual(msg(ev({ reason_code: 'DENY_DEFAULT' })), [
    '`DENY_DEFAULT` is a dataplane_verdict reason code; a control_authz event needs a control_authz code',
  ])
  assert.deepEqual(msg(ev({ reason_code: 'NOPE' })), ['unknown control_authz code `NOPE`'])
  assert.deepEqual(msg(ev({ message: '' })), ['expected a non-empty string'])
  assert.deepEqual(msg(ev({ command: '' })), ['expected a non-empty string'])
  assert.deepEqual(msg(ev({ message: 5 })), ['expected string, received number'])
  assert.deepEqual(msg(ev({ code_namespace: 'dataplane_verdict' })), ['expected `control_authz`, received `dataplane_verdict`'])
  assert.equal(msg(ev({ verdict: 'deny' }))[0], '`verdict` belongs to dataplane_verdict events; a control_authz event has no `verdict`')
  assert.equal(msg(ev({ would_block: false })).length, 1)
  assert.deepEqual(msg(ev({ extra: 1, other: 2 })), ['unrecognized keys: `extra`, `other`'])
})

test('log serializer: code_namespace first, table order, empty command dropped', () => {
  const rec = serializeControlPlaneAuthzErrorToLog({ command: 'Shutdown', message: 'x', reason_code: 'CTRL_COMMAND_FAILED', code_namespace: 'control_authz' })
  assert.deepEqual(Object.keys(rec), ['code_namespace', 'reason_code', 'message', 'command'])
  const dropped = serializeControlPlaneAuthzErrorToLog(ev({ command: '' }))
  assert.deepEqual(Object.keys(dropped), ['code_namespace', 'reason_code', 'message'])
  assert.throws(() => serializeControlPlaneAuthzErrorToLog(ev({ verdict: 'deny' })), { code: 'ERR_CONTRACT_VALIDATION' })
})

const snapshot = { broker: [{ ip: '10.0.0.5', port: 8081 }], dns: [{ ip: '10.0.0.53' }], rules: [] }
const validRequests = {
  GetHealth: { command: 'GetHealth' },
  GetStatus: { command: 'GetStatus', payload: null },
  GetPolicySummary: { command: 'GetPolicySummary', id: 'q' },
  GetPolicySnapshot: { command: 'GetPolicySnapshot' },
  ReplacePolicySnapshot: { command: 'ReplacePolicySnapshot', payload: snapshot },
  ValidatePolicySnapshot: { command: 'ValidatePolicySnapshot', payload: snapshot },
  UpsertManagedCgroup: { command: 'UpsertManagedCgroup', payload: { path: '/workloads/a', mode: 'observe', workloadId: 'wl' } },
  DeleteManagedCgroup: { command: 'DeleteManagedCgroup', payload: { id: '18446744073709551615' } },
  SetGlobalMode: { command: 'SetGlobalMode', payload: { mode: 'enforce' } },
  SetCgroupMode: { command: 'SetCgroupMode', payload: { id: '42', mode: 'observe' } },
  Shutdown: { command: 'Shutdown' },
  SubscribeEvents: { command: 'SubscribeEvents' },
  GetDnsStatus: { command: 'GetDnsStatus', id: 'd' },
}

test('requests: all eleven commands parse from objects and lines', () => {
  assert.deepEqual([...controlProtocolCommands].sort(), Object.keys(validRequests).sort())
  for (const [command, req] of Object.entries(validRequests)) {
    const parsed = parseControlCommandRequest(req)
    assert.equal(parsed.command, command)
    assert.deepEqual(parseControlCommandRequestLine(`${JSON.stringify(req)}\n`), parsed)
    assert.deepEqual(parseControlCommandRequestLine(Buffer.from(JSON.stringify(req))), parsed)
    assert.equal(ControlProtocolCommandSchema.parse(command), command)
  }
  assert.equal('payload' in parseControlCommandRequest(validRequests.GetStatus), false, 'null payload normalised away')
  assert.deepEqual(parseControlCommandRequest(validRequests.ReplacePolicySnapshot).payload.dns, [{ ip: '10.0.0.53', port: 53 }])
  assert.equal(ControlProtocolCommandSchema.safeParse('SetFailMode').success, false)
})

test('requests: malformed vs payload-invalid classification, id echoed', () => {
  const malformed = [
    'nope',
    '[]',
    '{"command":"SetFailMode","payload":{"mode":"open"}}',
    '{"command":"GetHealth","extra":true}',
    '{"command":"GetHealth","id":1}',
    '{"command":"GetHealth","command":"Shutdown"}',
    '{"command":"GetHealth"}\n{"command":"Shutdown"}',
  ]
  for (const line of malformed) {
    const e = rejection(() => parseControlCommandRequestLine(line))
    assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_MALFORMED', line)
    assert.equal(e.controlError.code_namespace, 'control_authz')
  }
  const payloadInvalid = [
    { command: 'GetHealth', payload: {} },
    { command: 'Shutdown', payload: false },
    { command: 'UpsertManagedCgroup', payload: { path: '/a', id: '1' } },
    { command: 'UpsertManagedCgroup', payload: {} },
    { command: 'UpsertManagedCgroup', payload: { id: '007' } },
    { command: 'UpsertManagedCgroup', payload: { path: '/a', workloadId: 'w'.repeat(64) } },
    { command: 'DeleteManagedCgroup', payload: { path: '/' } },
    { command: 'SetGlobalMode', payload: { mode: 'audit' } },
    { command: 'SetCgroupMode', payload: { path: '/a' } },
    { command: 'ReplacePolicySnapshot', payload: { ...snapshot, rules: [{ id: 'a', action: 'allow', cidr: '10.0.0.1/8' }] } },
  ]
  for (const req of payloadInvalid) {
    const e = rejection(() => parseControlCommandRequest({ ...req, id: 'r1' }))
    assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_PAYLOAD_INVALID', JSON.stringify(req))
    assert.equal(e.controlError.command, req.command)
    assert.equal(e.requestId, 'r1')
    assert.ok(e.issues.every((i) => i.path[0] === 'payload'))
  }
  const e = rejection(() => parseControlCommandRequest(payloadInvalid[9]))
  assert.equal(e.controlError.message, 'invalid ReplacePolicySnapshot payload: payload.rules[0].cidr: `10.0.0.1/8` has host bits set: write `10.0.0.0/8`')
  assert.equal(ControlCommandRequestSchema.safeParse(undefined).success, false)
})

test('request lines: the 16 MiB limit (newline excluded)', () => {
  const limit = 16 * 1024 * 1024
  const head = Buffer.from('{"command":"GetHealth"}')
  const line = Buffer.alloc(limit + 2, 0x20)
  head.copy(line)
  line[limit] = 0x0a
  assert.equal(parseControlCommandRequestLine(line.subarray(0, limit + 1)).command, 'GetHealth')
  const e = rejection(() => parseControlCommandRequestLine(line.subarray(0, limit + 1).fill(0x20, limit)))
  assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_MALFORMED')
  assert.match(e.controlError.message, /the limit is 16777216/)
})

const summary = { generation: 3, ipv4Rules: 1, ipv6Rules: 0, brokerEndpoints: 1, dnsEndpoints: 1, fqdnRules: 2, brokerNames: 1 }
const entry = { cgroupId: '4242', path: '/workloads/a', mode: 'observe', workloadId: 'wl' }
const status = {
  attachedHooks: ['connect4', 'connect6'],
  managedCgroups: [entry],
  globalMode: 'enforce',
  failMode: 'closed',
  generation: 3,
  ipv4Rules: 1,
  ipv6Rules: 0,
  eventsEmitted: 10,
  droppedInKernel: 0,
  droppedInQueue: 0,
  degraded: false,
  layers: [
    { layer: 'sock_create', state: 'active' },
    { layer: 'socket_create_lsm', state: 'unavailable', reason: 'the BPF LSM is not active' },
    { layer: 'egress', state: 'disabled' },
  ],
  activeLayers: ['sock_create'],
  layerCounters: { socketsRefused: 1, socketsWouldRefuse: 0, packetsDropped: 2, packetsWouldDrop: 0, packetsJudged: 3, marksWritten: 4 },
  verdicts: [{ hook: 'sendmsg4', reasonCode: 'DENY_DEFAULT', count: 2000000 }],
}
const validData = {
  GetHealth: { status: 'ok', degradedReasons: [], activeLayers: ['sock_create', 'egress'] },
  GetStatus: status,
  GetPolicySummary: summary,
  GetPolicySnapshot: { generation: 3, snapshot: { ...snapshot, rules: [{ id: 'r', action: 'allow', cidr: '10.0.0.0/8', ports: [443] }], dns: [{ ip: '10.0.0.53', port: 53 }], sampling: { allowOneIn: 1, unmanagedOneIn: 0 }, dnsQueries: 'any' } },
  ReplacePolicySnapshot: summary,
  ValidatePolicySnapshot: summary,
  UpsertManagedCgroup: entry,
  DeleteManagedCgroup: { cgroupId: '1' },
  SetGlobalMode: { globalMode: 'observe' },
  SetCgroupMode: entry,
  Shutdown: undefined,
  SubscribeEvents: undefined,
  GetDnsStatus: {
    serving: true,
    listen: ['127.0.0.1:5353'],
    dnsQueries: 'policy',
    learned: [{ name: 'api.github.com', address: '140.82.112.5', ttlRemainingMs: 59000, ruleIds: ['gh'], broker: false, cgroupId: '4242', workloadId: 'wl' }],
    counters: { queries: 3, refused: 1, wouldRefuse: 0, learnedAddresses: 1, upstreamFailures: 0 },
  },
}

test('responses: success for all eleven commands, failure, and the variant schemas', () => {
  for (const [command, data] of Object.entries(validData)) {
    const res = data === undefined ? { ok: true, command, id: 'x' } : { ok: true, command, data, id: 'x' }
    assert.deepEqual(parseControlCommandResponse(res), res)
    assert.deepEqual(parseControlCommandResponseLine(`${JSON.stringify(res)}\n`), res)
    assert.deepEqual(ControlProtocolSuccessResponseSchema.parse(res), res)
    assert.equal(ControlProtocolFailureResponseSchema.safeParse(res).success, false)
  }
  const failure = { ok: false, error: ev({ reason_code: 'CTRL_AUTH_PEERCRED_REJECTED_UID', command: 'Shutdown' }) }
  assert.deepEqual(ControlProtocolFailureResponseSchema.parse(failure), failure)
  assert.deepEqual(ControlProtocolErrorSchema.parse(failure.error), failure.error)
  assert.equal(ControlProtocolErrorSchema.safeParse(ev({ command: 'Reboot' })).success, false)
  assert.equal(ControlProtocolSuccessResponseSchema.safeParse(failure).success, false)
})

test('responses: GetStatus may carry learnedAddresses (SPEC 4b)', () => {
  const res = { ok: true, command: 'GetStatus', data: { ...status, learnedAddresses: 7 } }
  assert.deepEqual(parseControlCommandResponse(res), res)
})

test('responses: a summary from an agent before fqdn rules reads with fqdnRules and brokerNames 0', () => {
  const { fqdnRules, brokerNames, ...old } = summary
  assert.deepEqual([fqdnRules, brokerNames], [2, 1])
  const res = { ok: true, command: 'GetPolicySummary', data: old }
  assert.deepEqual(parseControlCommandResponse(res).data, { ...old, fqdnRules: 0, brokerNames: 0 })
  const bad = { ok: true, command: 'GetPolicySummary', data: { ...summary, fqdnRules: -1 } }
  assert.equal(ControlCommandResponseSchema.safeParse(bad).success, false)
})

test('responses: data schemas reject what they must', () => {
  const bad = [
    { ok: true, command: 'GetHealth', data: { status: 'ok', degradedReasons: ['stale heartbeat'] } },
    { ok: true, command: 'GetHealth' },
    { ok: true, command: 'Shutdown', data: {} },
    { ok: true, command: 'GetStatus', data: { ...status, droppedInKernel: -1 } },
    { ok: true, command: 'GetStatus', data: { ...status, eventsEmitted: 1.5 } },
    { ok: true, command: 'GetStatus', data: { ...status, learnedAddresses: -1 } },
    { ok: true, command: 'GetDnsStatus', data: { ...validData.GetDnsStatus, reason: 'serving anyway' } },
    { ok: true, command: 'GetDnsStatus', data: { ...validData.GetDnsStatus, dnsQueries: 'all' } },
    { ok: true, command: 'GetDnsStatus', data: { ...validData.GetDnsStatus, learned: [{ ...validData.GetDnsStatus.learned[0], name: 'API.github.com' }] } },
    { ok: true, command: 'GetDnsStatus', data: { ...validData.GetDnsStatus, counters: { queries: 1 } } },
    { ok: true, command: 'GetDnsStatus' },
    { ok: true, command: 'GetStatus', data: { ...status, attachedHooks: ['bind4'] } },
    { ok: true, command: 'GetStatus', data: { ...status, managedCgroups: [{ cgroupId: 42 }] } },
    { ok: true, command: 'GetStatus', data: { ...status, failMode: 'ajar' } },
    { ok: true, command: 'GetStatus', data: { ...status, activeLayers: ['sock_create', 'egress'] } },
    { ok: true, command: 'GetStatus', data: { ...status, layers: [{ layer: 'egress', state: 'unavailable' }], activeLayers: [] } },
    { ok: true, command: 'GetStatus', data: { ...status, layerCounters: { ...status.layerCounters, marksWritten: -1 } } },
    { ok: true, command: 'GetStatus', data: { ...status, verdicts: undefined } },
    { ok: true, command: 'GetStatus', data: { ...status, verdicts: [{ hook: 'sendmsg4', reasonCode: 'DENY_DEFAULT', count: 0 }] } },
    { ok: true, command: 'GetStatus', data: { ...status, verdicts: [{ hook: 'sendmsg4', reasonCode: 'CTRL_COMMAND_FAILED', count: 1 }] } },
    { ok: true, command: 'GetStatus', data: { ...status, verdicts: [...status.verdicts, ...status.verdicts] } },
    { ok: true, command: 'GetHealth', data: { status: 'ok', degradedReasons: [], activeLayers: ['firewall'] } },
    { ok: true, command: 'GetPolicySummary', data: { ...summary, generation: 0 } },
    { ok: true, command: 'GetPolicySnapshot', data: { generation: 0, snapshot } },
    { ok: true, command: 'GetPolicySnapshot', data: { generation: 2, snapshot: null } },
    { ok: true, command: 'GetPolicySnapshot', data: { generation: 2, snapshot: { ...snapshot, rules: [{ id: 'x', action: 'allow', cidr: '10.0.0.1/8' }] } } },
    { ok: true, command: 'GetPolicySnapshot', data: { snapshot } },
    { ok: true, command: 'GetPolicySnapshot' },
    { ok: true, command: 'SetGlobalMode', data: { globalMode: 'observe', extra: 1 } },
    { ok: false, error: ev({ verdict: 'deny' }) },
    { ok: false, error: ev({}), command: 'GetHealth' },
    { ok: 'yes', command: 'GetHealth' },
  ]
  for (const res of bad) assert.equal(ControlCommandResponseSchema.safeParse(res).success, false, JSON.stringify(res))
  assert.throws(() => parseControlCommandResponseLine('{"ok":true,"ok":false}'), { code: 'ERR_CONTRACT_VALIDATION' })
})

test('Shutdown: optional {detach} payload, at every command-level export; the envelope takes anything', () => {
  for (const payload of [undefined, null, {}, { detach: false }]) {
    assert.equal(parseControlCommandPayload('Shutdown', payload), undefined, JSON.stringify(payload))
    assert.equal(ControlCommandPayloadSchemas.Shutdown.parse(payload), undefined)
    const req = payload === undefined ? { command: 'Shutdown' } : { command: 'Shutdown', payload }
    assert.deepEqual(parseControlCommandRequest(req), { command: 'Shutdown' }, 'a plain shutdown carries no payload')
  }
  assert.deepEqual(parseControlCommandPayload('Shutdown', { detach: true }), { detach: true })
  assert.deepEqual(parseControlCommandRequestLine('{"command":"Shutdown","payload":{"detach":true},"id":"bye"}\n'), {
    command: 'Shutdown',
    payload: { detach: true },
    id: 'bye',
  })
  for (const payload of [{ detach: 'yes' }, { force: true }, [], 0]) {
    assert.equal(ControlCommandPayloadSchemas.Shutdown.safeParse(payload).success, false, JSON.stringify(payload))
    const e = rejection(() => parseControlCommandRequest({ command: 'Shutdown', payload, id: 's' }))
    assert.equal(e.controlError.reason_code, 'CTRL_REQUEST_PAYLOAD_INVALID', JSON.stringify(payload))
  }
  const e = ControlCommandPayloadSchemas.Shutdown.safeParse({ detach: 1 })
  assert.deepEqual(e.error.issues.map((i) => i.path), [['detach']])
})

test('GetHealth data: the optional agent fields, and their rules', () => {
  const full = {
    status: 'degraded',
    degradedReasons: ['no policy loaded'],
    degradedSince: '2026-11-29T11:00:20.599926676Z',
    startedAt: '2026-11-29T11:00:20Z',
    adopted: true,
    adoptedHeartbeatAgeMs: 7059,
    heartbeatAgeMs: 389,
    heartbeatGraceMs: 5000,
    version: '0.1.0',
  }
  assert.deepEqual(parseControlCommandData('GetHealth', full), full)
  assert.deepEqual(ControlCommandDataSchemas.GetHealth.parse({ status: 'ok', degradedReasons: [], adopted: false }), {
    status: 'ok',
    degradedReasons: [],
    adopted: false,
  })
  const res = { ok: true, command: 'GetHealth', data: full, id: '2' }
  assert.deepEqual(parseControlCommandResponseLine(JSON.stringify(res)), res)
  const ok = { status: 'ok', degradedReasons: [] }
  for (const bad of [
    { ...ok, degradedSince: '2026-11-29T11:00:20Z' },
    { ...ok, adoptedHeartbeatAgeMs: 5 },
    { ...ok, adopted: false, adoptedHeartbeatAgeMs: 5 },
    { ...ok, startedAt: 'yesterday' },
    { ...ok, adopted: 'yes' },
    { ...ok, heartbeatAgeMs: -1 },
    { ...ok, heartbeatGraceMs: 1.5 },
    { ...ok, uptimeMs: 1 },
    { ...ok, version: '' },
    { ...ok, version: '0.1.0 beta' },
    { ...ok, version: 'x'.repeat(65) },
    { ...ok, version: null },
    { ...ok, version: 1 },
  ]) {
    assert.equal(ControlCommandDataSchemas.GetHealth.safeParse(bad).success, false, JSON.stringify(bad))
  }
})
