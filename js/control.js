'use strict'
// Control-plane contract: ControlPlaneAuthzEvent, the control protocol, the agent config and the control
// socket's peer/socket checks. Every rule is in Rust (crates/core/src/contract/); this file converts inputs and
// outcomes.
//
// The control protocol has two levels (docs/control-protocol.md):
// - the generic envelope, what the original package's exports checked and still check: `ControlProtocol*Schema`,
//   `parseControlProtocolRequest/Response(Line)`; `payload` and `data` are any JSON value;
// - each command's strict payload and data: `parseControlCommandPayload/Data(command, value)`, the per-command
//   `ControlCommandPayloadSchemas`/`ControlCommandDataSchemas`, and whole messages checked the way the agent
//   checks them: `parseControlCommandRequest/Response(Line)`.

const fs = require('node:fs')
const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')
const { unwrapOutcome } = require('./policy.js')

// The command list is Rust's (crates/core/src/contract/control/protocol/mod.rs), like the code lists.
const controlProtocolCommands = Object.freeze(native.codeTables().controlProtocolCommands)

/**
 * Thrown for a rejected control request. Besides the issues it carries the failure the agent sends back:
 * `controlError.reason_code` is CTRL_REQUEST_MALFORMED (the envelope) or CTRL_REQUEST_PAYLOAD_INVALID (the
 * command's payload; only the strict parsers check it).
 */
class ControlProtocolRequestError extends ContractValidationError {
  constructor(issues, rejection) {
    super('ControlProtocolRequest', issues)
    this.controlError = rejection.error
    if (rejection.id !== undefined) this.requestId = rejection.id
  }
}

function requestOutcome(outcome) {
  if (outcome.issues != null) throw new ControlProtocolRequestError(outcome.issues, JSON.parse(outcome.rejection))
  return JSON.parse(outcome.json)
}

function toBytes(input) {
  if (typeof input === 'string') return Buffer.from(input, 'utf8')
  if (input instanceof Uint8Array) return input
  throw new ContractValidationError('ControlProtocolLine', [
    { path: [], code: 'invalid_type', message: `expected Buffer, Uint8Array or string, received ${typeName(input)}` },
  ])
}

function typeName(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v
}

// fs.Stats (and the BigIntStats of `{bigint: true}`, whose class node does not export) carry far more than the
// three fields the check needs and methods JSON cannot hold: pass on what stat() said, as numbers.
function socketMetadata(meta) {
  if (meta instanceof fs.Stats || (meta != null && typeof meta.isSocket === 'function' && 'mode' in meta)) {
    return { mode: Number(meta.mode), uid: Number(meta.uid), gid: Number(meta.gid) }
  }
  return meta
}

function parseControlPlaneAuthzEvent(input) {
  return unwrapOutcome('ControlPlaneAuthzEvent', native.parseControlPlaneAuthzEventJson(input))
}

function serializeControlPlaneAuthzErrorToLog(input) {
  return unwrapOutcome('ControlPlaneAuthzEvent', native.serializeControlPlaneAuthzErrorToLogJson(input))
}

// ---- generic envelope (the original package's semantics) ----------------------------------------------------

function parseControlProtocolRequest(input) {
  return requestOutcome(native.parseControlEnvelopeRequestJson(input))
}

function parseControlProtocolRequestLine(line) {
  return requestOutcome(native.parseControlEnvelopeRequestLineBytes(toBytes(line)))
}

function parseControlProtocolResponse(input) {
  return unwrapOutcome('ControlProtocolResponse', native.parseControlEnvelopeResponseJson(input, 0))
}

function parseControlProtocolResponseLine(line) {
  return unwrapOutcome('ControlProtocolResponse', native.parseControlEnvelopeResponseLineBytes(toBytes(line)))
}

// ---- strict, per command (what the agent and a control client use) ------------------------------------------

/** A command's payload or data, `undefined` for the commands that have none. */
function optionalValue(outcome, schema) {
  const value = unwrapOutcome(schema, outcome)
  return value === null ? undefined : value
}

function parseControlCommandPayload(command, payload) {
  return optionalValue(native.parseControlCommandPayloadJson(command, payload), 'ControlCommandPayload')
}

function parseControlCommandData(command, data) {
  return optionalValue(native.parseControlCommandDataJson(command, data), 'ControlCommandData')
}

function parseControlCommandRequest(input) {
  return requestOutcome(native.parseControlProtocolRequestJson(input))
}

function parseControlCommandRequestLine(line) {
  return requestOutcome(native.parseControlProtocolRequestLineBytes(toBytes(line)))
}

function parseControlCommandResponse(input) {
  return unwrapOutcome('ControlCommandResponse', native.parseControlProtocolResponseJson(input, 0))
}

function parseControlCommandResponseLine(line) {
  return unwrapOutcome('ControlCommandResponse', native.parseControlProtocolResponseLineBytes(toBytes(line)))
}

function parseEbpfInterceptorConfig(input) {
  return unwrapOutcome('EbpfInterceptorConfig', native.parseEbpfInterceptorConfigJson(input))
}

function shouldFailClosedOnUnknownReasonCode(config) {
  return unwrapOutcome('EbpfInterceptorConfig', native.shouldFailClosedOnUnknownReasonCodeJson(config))
}

function authorizeControllerPeer(peer, policy) {
  return unwrapOutcome('authorizeControllerPeer', native.authorizeControllerPeerJson(peer ?? null, policy))
}

function validateSocketSecurityMetadata(meta, expected) {
  return unwrapOutcome(
    'validateSocketSecurityMetadata',
    native.validateSocketSecurityMetadataJson(socketMetadata(meta), expected),
  )
}

const ControlPlaneAuthzEventSchema = makeSchema('ControlPlaneAuthzEvent', parseControlPlaneAuthzEvent)
const ControlProtocolCommandSchema = makeSchema('ControlProtocolCommand', (input) =>
  unwrapOutcome('ControlProtocolCommand', native.parseControlProtocolCommandJson(input)),
)
const ControlProtocolRequestSchema = makeSchema('ControlProtocolRequest', parseControlProtocolRequest)
const ControlProtocolErrorSchema = makeSchema('ControlProtocolError', (input) =>
  unwrapOutcome('ControlProtocolError', native.parseControlProtocolErrorJson(input)),
)
const ControlProtocolSuccessResponseSchema = makeSchema('ControlProtocolSuccessResponse', (input) =>
  unwrapOutcome('ControlProtocolSuccessResponse', native.parseControlEnvelopeResponseJson(input, 1)),
)
const ControlProtocolFailureResponseSchema = makeSchema('ControlProtocolFailureResponse', (input) =>
  unwrapOutcome('ControlProtocolFailureResponse', native.parseControlEnvelopeResponseJson(input, 2)),
)
const ControlProtocolResponseSchema = makeSchema('ControlProtocolResponse', parseControlProtocolResponse)

const ControlCommandRequestSchema = makeSchema('ControlCommandRequest', parseControlCommandRequest)
const ControlCommandResponseSchema = makeSchema('ControlCommandResponse', parseControlCommandResponse)
const ControlCommandPayloadSchemas = Object.freeze(
  Object.fromEntries(
    controlProtocolCommands.map((c) => [c, makeSchema(`${c}Payload`, (payload) => parseControlCommandPayload(c, payload))]),
  ),
)
const ControlCommandDataSchemas = Object.freeze(
  Object.fromEntries(
    controlProtocolCommands.map((c) => [c, makeSchema(`${c}Data`, (data) => parseControlCommandData(c, data))]),
  ),
)
const EbpfInterceptorConfigSchema = makeSchema('EbpfInterceptorConfig', parseEbpfInterceptorConfig)

module.exports = {
  controlProtocolCommands,
  ControlProtocolRequestError,
  ControlPlaneAuthzEventSchema,
  ControlProtocolCommandSchema,
  ControlProtocolRequestSchema,
  ControlProtocolErrorSchema,
  ControlProtocolSuccessResponseSchema,
  ControlProtocolFailureResponseSchema,
  ControlProtocolResponseSchema,
  ControlCommandRequestSchema,
  ControlCommandResponseSchema,
  ControlCommandPayloadSchemas,
  ControlCommandDataSchemas,
  EbpfInterceptorConfigSchema,
  parseControlPlaneAuthzEvent,
  parseControlProtocolRequest,
  parseControlProtocolRequestLine,
  parseControlProtocolResponse,
  parseControlProtocolResponseLine,
  parseControlCommandPayload,
  parseControlCommandData,
  parseControlCommandRequest,
  parseControlCommandRequestLine,
  parseControlCommandResponse,
  parseControlCommandResponseLine,
  serializeControlPlaneAuthzErrorToLog,
  authorizeControllerPeer,
  validateSocketSecurityMetadata,
  parseEbpfInterceptorConfig,
  shouldFailClosedOnUnknownReasonCode,
}
