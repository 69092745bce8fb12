'use strict'
// Reason-code lists and the literal schemas. The lists come from Rust (crates/core/src/contract/reason_codes.rs), the one
// place every code is defined; this file freezes them and wraps the Rust checks in zod-style schema objects.

const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')

const tables = native.codeTables()

const dataplaneVerdictReasonCodes = Object.freeze(tables.dataplaneVerdictReasonCodes)
const controlPlaneAuthzErrorCodes = Object.freeze(tables.controlPlaneAuthzErrorCodes)

function literalSchema(name, set) {
  return makeSchema(name, (input) => {
    const issues = native.checkLiteral(set, input)
    if (issues !== null) throw new ContractValidationError(name, issues)
    return input
  })
}

const DataplaneVerdictReasonCodeSchema = literalSchema(
  'DataplaneVerdictReasonCode',
  native.LiteralSet.DataplaneReasonCode,
)
const ControlPlaneAuthzErrorCodeSchema = literalSchema('ControlPlaneAuthzErrorCode', native.LiteralSet.ControlAuthzCode)
const DataplaneVerdictSchema = literalSchema('DataplaneVerdict', native.LiteralSet.Verdict)
const DataplaneHookSchema = literalSchema('DataplaneHook', native.LiteralSet.Hook)

/** Throws if a reason code appears in both namespaces. Runs once when the module loads. */
function assertNoReasonCodeOverlap() {
  const overlap = native.reasonCodeOverlap()
  if (overlap.length > 0) {
    const error = new Error(`reason codes appear in both namespaces: ${overlap.join(', ')}`)
    error.code = 'ERR_REASON_CODE_OVERLAP'
    throw error
  }
}

assertNoReasonCodeOverlap()

module.exports = {
  dataplaneVerdictReasonCodes,
  controlPlaneAuthzErrorCodes,
  DataplaneVerdictReasonCodeSchema,
  ControlPlaneAuthzErrorCodeSchema,
  DataplaneVerdictSchema,
  DataplaneHookSchema,
  assertNoReasonCodeOverlap,
}
