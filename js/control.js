'use strict'
// Control-plane contract: ControlPlaneAuthzEvent, the control protocol, the agent config and the control
// socket's peer/socket checks. Every rule is in Rust (src/contract/); this file converts inputs and outcomes.

const fs = require('node:fs')
const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')
const { unwrapOutcome } = require('./policy.js')

const controlProtocolCommands = Object.freeze([
  'GetHealth',
  'GetStatus',
  'GetPolicySummary',
  'ReplacePolicySnapshot',
  'UpsertManagedCgroup',
  'DeleteManagedCgroup',
  'SetGlobalMode',
  'SetCgroupMode',
  'Shutdown',
  'SubscribeEvents',
])

/**
 * Thrown for a rejected control request. Besides the issues it carries the failure the agent sends back:
 * `controlError.reason_code` is CTRL_REQUEST_MALFORMED or CTRL_REQUEST_PAYLOAD_INVALID.
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

function parseControlProtocolRequest(input) {
  return requestOutcome(native.parseControlProtocolRequestJson(input))
}

function parseControlProtocolRequestLine(line) {
  return requestOutcome(native.parseControlProtocolRequestLineBytes(toBytes(line)))
}

function parseControlProtocolResponse(input) {
  return unwrapOutcome('ControlProtocolResponse', native.parseControlProtocolResponseJson(input, 0))
}

function parseControlProtocolResponseLine(line) {
  return unwrapOutcome('ControlProtocolResponse', native.parseControlProtocolResponseLineBytes(toBytes(line)))
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
  unwrapOutcome('ControlProtocolSuccessResponse', native.parseControlProtocolResponseJson(input, 1)),
)
const ControlProtocolFailureResponseSchema = makeSchema('ControlProtocolFailureResponse', (input) =>
  unwrapOutcome('ControlProtocolFailureResponse', native.parseControlProtocolResponseJson(input, 2)),
)
const ControlProtocolResponseSchema = makeSchema('ControlProtocolResponse', parseControlProtocolResponse)
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
  EbpfInterceptorConfigSchema,
  parseControlPlaneAuthzEvent,
  parseControlProtocolRequest,
  parseControlProtocolRequestLine,
  parseControlProtocolResponse,
  parseControlProtocolResponseLine,
  serializeControlPlaneAuthzErrorToLog,
  authorizeControllerPeer,
  validateSocketSecurityMetadata,
  parseEbpfInterceptorConfig,
  shouldFailClosedOnUnknownReasonCode,
}
