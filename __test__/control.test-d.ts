// Compiled by `pnpm typecheck` against the published index.d.ts; never run.
import {
  authorizeControllerPeer,
  parseControlCommandData,
  parseControlCommandPayload,
  parseControlCommandRequest,
  parseControlCommandResponseLine,
  parseControlProtocolRequest,
  parseControlProtocolResponse,
  parseControlProtocolResponseLine,
  ControlCommandDataSchemas,
  ControlCommandPayloadSchemas,
  parseEbpfInterceptorConfig,
  parsePolicySnapshot,
  validateSocketSecurityMetadata,
  ControlProtocolRequestError,
  type ControlAuthzResult,
  type ControlPlaneAuthzEvent,
  type ControlProtocolCommand,
  type ControlCommandRequestInput,
  type ControlProtocolRequest,
  type StatusData,
  type HealthData,
  type ControlCommandPayloads,
  type ShutdownPayload,
  type ControlProtocolResponse,
  type EbpfInterceptorConfig,
  type PolicySnapshot,
} from '../index.js'

// The generic envelope: the original's types, payload and data any value.
const envelope: ControlProtocolRequest = parseControlProtocolRequest({ command: 'GetHealth' })
const anyPayload: ControlProtocolRequest = { command: 'GetHealth', payload: { verbose: true } }
const generic = parseControlProtocolResponse({ ok: true, command: 'Shutdown' })
if (generic.ok) {
  const data: unknown = generic.data
  void data
}
void [envelope, anyPayload]

// Strict, per command.
const req = parseControlCommandRequest({ command: 'GetHealth' })
if (req.command === 'UpsertManagedCgroup') {
  const mode: 'enforce' | 'observe' | undefined = req.payload.mode
  void mode
}
if (req.command === 'ReplacePolicySnapshot') {
  const port: number = req.payload.dns[0]!.port
  void port
}
const ok: ControlCommandRequestInput = { command: 'SetCgroupMode', payload: { id: '42', mode: 'observe' } }
// @ts-expect-error SetFailMode is not a command
const notACommand: ControlProtocolCommand = 'SetFailMode'
// @ts-expect-error path and id together are not a cgroup selector
const both: ControlCommandRequestInput = { command: 'DeleteManagedCgroup', payload: { path: '/a', id: '1' } }
// @ts-expect-error SetGlobalMode needs a payload
const noPayload: ControlCommandRequestInput = { command: 'SetGlobalMode' }
// @ts-expect-error GetHealth takes no payload
const extraPayload: ControlCommandRequestInput = { command: 'GetHealth', payload: { verbose: true } }
// Shutdown's payload is optional: absent, null, or {detach?}.
const shutdowns: ControlCommandRequestInput[] = [
  { command: 'Shutdown' },
  { command: 'Shutdown', payload: null },
  { command: 'Shutdown', payload: {} },
  { command: 'Shutdown', payload: { detach: true }, id: 'bye' },
]
// @ts-expect-error detach is a boolean
const detachString: ControlCommandRequestInput = { command: 'Shutdown', payload: { detach: 'yes' } }
const shutdownInput: ShutdownPayload = { detach: false }
const normalisedShutdown: ControlCommandPayloads['Shutdown'] = parseControlCommandPayload('Shutdown', shutdownInput)
if (normalisedShutdown !== undefined) {
  const detach: true = normalisedShutdown.detach
  void detach
}
const checkedShutdown = parseControlCommandRequest({ command: 'Shutdown', payload: { detach: true } })
if (checkedShutdown.command === 'Shutdown') {
  const detach: true | undefined = checkedShutdown.payload?.detach
  void detach
}
// @ts-expect-error the normalised form only says `detach: true`
const notNormalised: ControlCommandPayloads['Shutdown'] = { detach: false }
void [shutdowns, detachString, notNormalised]

const plain: ControlProtocolResponse = parseControlProtocolResponseLine(Buffer.from('{"ok":true,"command":"Shutdown"}'))
void plain
const res = parseControlCommandResponseLine(Buffer.from('{"ok":true,"command":"Shutdown"}'))
const statusData: StatusData = parseControlCommandData('GetStatus', {})
const modePayload: 'enforce' | 'observe' = parseControlCommandPayload('SetGlobalMode', {}).mode
const nothing: undefined = parseControlCommandPayload('GetHealth', null)
const viaSchema: 'ok' | 'degraded' = ControlCommandDataSchemas.GetHealth.parse({}).status
const health: HealthData = parseControlCommandData('GetHealth', {})
const healthExtras: [string | undefined, string | undefined, boolean | undefined, number | undefined, number | undefined, number | undefined] = [
  health.degradedSince,
  health.startedAt,
  health.adopted,
  health.adoptedHeartbeatAgeMs,
  health.heartbeatAgeMs,
  health.heartbeatGraceMs,
]
void healthExtras
const agentVersion: string | undefined = health.version
void agentVersion
const payloadSchema: number = ControlCommandPayloadSchemas.ReplacePolicySnapshot.parse({}).dns[0]!.port
// @ts-expect-error not a command
parseControlCommandPayload('Reboot', {})
void [statusData, modePayload, nothing, viaSchema, payloadSchema]
if (res.ok && res.command === 'GetStatus') {
  const dropped: number = res.data.droppedInKernel
  void dropped
} else if (!res.ok) {
  const code: 'CTRL_COMMAND_FAILED' | string = res.error.reason_code
  void code
}

// @ts-expect-error a control event has no verdict
const withVerdict: ControlPlaneAuthzEvent = { code_namespace: 'control_authz', reason_code: 'CTRL_COMMAND_FAILED', message: 'm', verdict: 'deny' }
// @ts-expect-error dataplane codes are not control codes
const wrongCode: ControlPlaneAuthzEvent = { code_namespace: 'control_authz', reason_code: 'DENY_DEFAULT', message: 'm' }

const config: EbpfInterceptorConfig = parseEbpfInterceptorConfig()
// The original took `input: unknown`: any value compiles, the checks are at run time.
const fromUnknown: EbpfInterceptorConfig = parseEbpfInterceptorConfig(JSON.parse('{}') as unknown)
void fromUnknown
const r: ControlAuthzResult = authorizeControllerPeer({ hasPeerCred: true, uid: 1000, gid: 1000 }, { allowedUids: [0], allowedGids: [] })
if (!r.ok) {
  // Flat, as in the original: no nested `error`.
  const code: 'CTRL_AUTH_PEERCRED_REJECTED_UID' | ControlPlaneAuthzEvent['reason_code'] = r.reason_code
  const ns: 'control_authz' = r.code_namespace
  void [code, ns, r.message]
}
authorizeControllerPeer(null, config)
authorizeControllerPeer({ uid: 0, gid: 0, pid: 1 }, config)
validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 0, ownerGid: 0 }, { expectedMode: 0o660, expectedOwnerUid: 0, expectedOwnerGid: 0 })
validateSocketSecurityMetadata({ mode: 0o660, uid: 0, gid: 0 }, config)
// @ts-expect-error the metadata needs a mode
validateSocketSecurityMetadata({ ownerUid: 0, ownerGid: 0 }, config)
// @ts-expect-error hasPeerCred is a boolean
authorizeControllerPeer({ hasPeerCred: 'yes', uid: 0, gid: 0 }, config)
const snap: PolicySnapshot = parsePolicySnapshot({})
// @ts-expect-error action is allow | deny
snap.rules.push({ id: 'x', action: 'permit', cidr: '10.0.0.0/8' })
try {
  parseControlProtocolRequest('x')
} catch (e) {
  if (e instanceof ControlProtocolRequestError) {
    const code: 'CTRL_REQUEST_MALFORMED' | 'CTRL_REQUEST_PAYLOAD_INVALID' = e.controlError.reason_code
    void code
  }
}
void [ok, notACommand, both, noPayload, extraPayload, withVerdict, wrongCode]
