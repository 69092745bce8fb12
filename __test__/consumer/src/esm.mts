// Written against the original TypeScript package's API (SPEC 3, "Drop-in rule"): every export it had, used the
// way its callers use it. Compiled with `strict` and `moduleResolution: nodenext` against the installed
// tarball, then run with node: the types and the behaviour must both hold.
import assert from 'node:assert/strict'
import {
  assertNoReasonCodeOverlap,
  authorizeControllerPeer,
  controlPlaneAuthzErrorCodes,
  ControlPlaneAuthzErrorCodeSchema,
  ControlPlaneAuthzEventSchema,
  ControlProtocolCommandSchema,
  ControlProtocolErrorSchema,
  ControlProtocolFailureResponseSchema,
  ControlProtocolRequestSchema,
  ControlProtocolResponseSchema,
  ControlProtocolSuccessResponseSchema,
  DataplaneHookSchema,
  DataplanePacketEventSchema,
  dataplaneVerdictReasonCodes,
  DataplaneVerdictReasonCodeSchema,
  DataplaneVerdictSchema,
  EbpfInterceptorConfigSchema,
  parseControlPlaneAuthzEvent,
  parseControlProtocolResponse,
  parseDataplanePacketEvent,
  parseEbpfInterceptorConfig,
  serializeControlPlaneAuthzErrorToLog,
  serializeDataplanePacketEventToLog,
  shouldFailClosedOnUnknownReasonCode,
  validateSocketSecurityMetadata,
  Interceptor,
  type ControlAuthzFailure,
  type ControlAuthzLogRecord,
  type ControlAuthzResult,
  type ControllerAuthorizationPolicy,
  type ControllerPeer,
  type ControlPlaneAuthzErrorCode,
  type ControlPlaneAuthzEvent,
  type ControlProtocolCommand,
  type ControlProtocolError,
  type ControlProtocolRequest,
  type ControlProtocolResponse,
  type DataplaneLogRecord,
  type DataplanePacketEvent,
  type DataplaneVerdictReasonCode,
  type EbpfInterceptorConfig,
  type SocketSecurityExpectations,
  type SocketSecurityMetadata,
} from '@broker-interceptor/interceptor-ebpf'

// ---- reason codes -------------------------------------------------------------------------------------------
const firstDataplane: DataplaneVerdictReasonCode = dataplaneVerdictReasonCodes[0]
const firstControl: ControlPlaneAuthzErrorCode = controlPlaneAuthzErrorCodes[0]
assert.equal(firstDataplane, 'UNMANAGED_ALLOW')
assert.equal(firstControl, 'CTRL_AUTH_PEERCRED_UNAVAILABLE')
const overlap = dataplaneVerdictReasonCodes.filter((code) => (controlPlaneAuthzErrorCodes as readonly string[]).includes(code))
assert.deepEqual(overlap, [])
assertNoReasonCodeOverlap()
assert.equal(DataplaneVerdictReasonCodeSchema.parse('DENY_DEFAULT'), 'DENY_DEFAULT')
assert.equal(ControlPlaneAuthzErrorCodeSchema.safeParse('DENY_DEFAULT').success, false)
assert.equal(DataplaneVerdictSchema.parse('deny'), 'deny')
assert.equal(DataplaneHookSchema.safeParse('connect7').success, false)

// ---- events -------------------------------------------------------------------------------------------------
const invalidEvent: unknown = { code_namespace: 'dataplane_verdict', reason_code: 'CTRL_AUTH_PEERCRED_UNAVAILABLE', verdict: 'deny' }
assert.throws(() => parseDataplanePacketEvent(invalidEvent))
const event: DataplanePacketEvent = parseDataplanePacketEvent({
  code_namespace: 'dataplane_verdict',
  reason_code: 'OBSERVE_WOULD_DENY_DEFAULT',
  verdict: 'allow',
  would_block: true,
  hook: 'connect6',
})
assert.equal(event.would_block, true)
assert.equal(DataplanePacketEventSchema.safeParse({ ...event, would_block: undefined }).success, false)
const record: DataplaneLogRecord = serializeDataplanePacketEventToLog({
  code_namespace: 'dataplane_verdict',
  reason_code: 'DENY_DEFAULT',
  verdict: 'deny',
  hook: 'connect6',
})
assert.equal(record.code_namespace, 'dataplane_verdict')
assert.equal('verdict' in record, true)

const authzEvent: ControlPlaneAuthzEvent = parseControlPlaneAuthzEvent({
  code_namespace: 'control_authz',
  reason_code: 'CTRL_AUTH_SOCKET_MODE_INVALID',
  message: 'invalid mode',
})
assert.equal(ControlPlaneAuthzEventSchema.safeParse({ ...authzEvent, verdict: 'deny' }).success, false)
const eventInput: unknown = { code_namespace: 'control_authz', reason_code: 'CTRL_AUTH_PEERCRED_REJECTED_UID', message: 'peer uid is not authorized' }
const authzRecord: ControlAuthzLogRecord = serializeControlPlaneAuthzErrorToLog(eventInput)
assert.equal('would_block' in (authzRecord as Record<string, unknown>), false)

// ---- config -------------------------------------------------------------------------------------------------
const configInput: unknown = { environment: 'production', rejectUnknownReasonCodes: false }
const config: EbpfInterceptorConfig = parseEbpfInterceptorConfig(configInput)
assert.equal(shouldFailClosedOnUnknownReasonCode(config), true)
assert.equal(config.controlSocketPath, '/var/run/broker-interceptor-ebpf/agentd.sock')
assert.equal(EbpfInterceptorConfigSchema.parse({}).controlSocketFileMode, 0o660)
assert.equal(shouldFailClosedOnUnknownReasonCode(EbpfInterceptorConfigSchema.parse({ rejectUnknownReasonCodes: false })), false)

// ---- peer and socket checks ---------------------------------------------------------------------------------
const peer: ControllerPeer = { hasPeerCred: true, uid: 2000, gid: 1000 }
const policy: ControllerAuthorizationPolicy = { allowedUids: [1000], allowedGids: [] }
const refused: ControlAuthzResult = authorizeControllerPeer(peer, policy)
assert.equal(refused.ok, false)
if (!refused.ok) {
  const failure: ControlAuthzFailure = refused
  assert.equal(failure.reason_code, 'CTRL_AUTH_PEERCRED_REJECTED_UID')
  assert.equal(failure.reason_code.startsWith('CTRL_AUTH_'), true)
  assert.equal(failure.message, 'peer uid 2000 is not authorized')
  assert.equal(failure.code_namespace, 'control_authz')
}
assert.deepEqual(authorizeControllerPeer({ hasPeerCred: true, uid: 9999, gid: 2000 }, { allowedUids: [1000], allowedGids: [2000] }), { ok: true })
assert.deepEqual(authorizeControllerPeer({ hasPeerCred: true, uid: 5000, gid: 5000 }, { allowedUids: [], allowedGids: [] }), { ok: true })
const meta: SocketSecurityMetadata = { mode: 0o666, ownerUid: 0, ownerGid: 0 }
const expected: SocketSecurityExpectations = { expectedMode: 0o660, expectedOwnerUid: 0, expectedOwnerGid: 0 }
assert.deepEqual(validateSocketSecurityMetadata(meta, expected), {
  ok: false,
  code_namespace: 'control_authz',
  reason_code: 'CTRL_AUTH_SOCKET_MODE_INVALID',
  message: 'socket mode 666 != expected 660',
})

// ---- control protocol (generic envelope) --------------------------------------------------------------------
const command: ControlProtocolCommand = ControlProtocolCommandSchema.parse('GetHealth')
const request: ControlProtocolRequest = ControlProtocolRequestSchema.parse({ command })
assert.equal(request.command, 'GetHealth')
// The envelope: any payload, any data, as the original's `z.unknown().optional()`.
const withPayload: ControlProtocolRequest = { command: 'SetGlobalMode', payload: { mode: 'whatever' } }
assert.deepEqual(ControlProtocolRequestSchema.parse(withPayload), withPayload)
const success = parseControlProtocolResponse({ ok: true, command: 'GetHealth', data: { anything: 1 } })
if (success.ok) {
  const data: unknown = success.data
  assert.deepEqual(data, { anything: 1 })
}
const invalidResponse: unknown = {
  ok: false,
  error: { code_namespace: 'control_authz', reason_code: 'DENY_DEFAULT', message: 'not allowed' },
}
assert.throws(() => parseControlProtocolResponse(invalidResponse))
const response: ControlProtocolResponse = parseControlProtocolResponse({
  ok: false,
  error: { code_namespace: 'control_authz', reason_code: 'CTRL_AUTH_SOCKET_OWNER_INVALID', message: 'owner', command: 'Shutdown' },
})
if (!response.ok) {
  const error: ControlProtocolError = response.error
  assert.equal(error.command, 'Shutdown')
}
assert.equal(ControlProtocolErrorSchema.safeParse({ code_namespace: 'control_authz', reason_code: 'CTRL_COMMAND_FAILED', message: 'm', command: 'Reboot' }).success, false)
assert.equal(ControlProtocolSuccessResponseSchema.safeParse({ ok: true, command: 'Shutdown' }).success, true)
assert.equal(ControlProtocolFailureResponseSchema.safeParse({ ok: true, command: 'Shutdown' }).success, false)
assert.equal(ControlProtocolResponseSchema.safeParse({ ok: true, command: 'Shutdown', extra: 1 }).success, false)

// ---- the original's object types were type aliases: they stand in for Record<string, unknown> ------------
const records: Array<Record<string, unknown>> = [event, record, authzEvent, authzRecord, config, response, request]
if (!refused.ok) records.push(refused)
assert.equal(records.length, 8)

// ---- beyond the original: the dataplane class is there --------------------------------------------------------
assert.equal(typeof Interceptor, 'function')

console.log('esm: ok')
