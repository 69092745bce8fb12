'use strict'
// Policy snapshot schema: every rule is checked by the Rust parser (crates/core/src/contract/policy/); this
// file only turns its outcome into a value or a ContractValidationError.

const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')

/** Turns a Rust ParseOutcome into the parsed value, or throws ContractValidationError naming `schema`. */
function unwrapOutcome(schema, outcome) {
  if (outcome.issues != null) throw new ContractValidationError(schema, outcome.issues)
  return JSON.parse(outcome.json)
}

/** Validates a policy snapshot and returns it normalised (defaults filled: dns ports, sampling). */
function parsePolicySnapshot(input) {
  return unwrapOutcome('PolicySnapshot', native.parsePolicySnapshotJson(input))
}

const PolicySnapshotSchema = makeSchema('PolicySnapshot', parsePolicySnapshot)

module.exports = { PolicySnapshotSchema, parsePolicySnapshot, unwrapOutcome }
