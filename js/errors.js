'use strict'
// Errors and schema objects shared by every part of the JavaScript API.
// Validation rules never live here: Rust decides, this file only shapes the result the way zod users expect.

/** Thrown by every `parse*` function and `Schema.parse` when the input breaks the contract. */
class ContractValidationError extends Error {
  /**
   * @param {string} schema name of the schema that rejected the input
   * @param {Array<{path: Array<string|number>, code: string, message: string}>} issues every problem found
   */
  constructor(schema, issues) {
    super(`${schema}: ${formatIssues(issues)}`)
    this.name = 'ContractValidationError'
    this.code = 'ERR_CONTRACT_VALIDATION'
    this.schema = schema
    this.issues = issues
  }
}

/**
 * Why a dataplane operation of `Interceptor` failed: a stable `code` (`ERR_DATAPLANE_*` from
 * `DataplaneError::code` in Rust, or `ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM` where no native addon serves the
 * process) and a one-line `message` with the cause (the kernel's errno, aya's error). A program the kernel
 * rejected carries the verifier's output as `verifierLog`. Invalid input is a ContractValidationError instead.
 */
class DataplaneError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{cause?: unknown, verifierLog?: string}} [options]
   */
  constructor(code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'DataplaneError'
    this.code = code
    if (options.verifierLog !== undefined) this.verifierLog = options.verifierLog
  }
}

function formatIssues(issues) {
  return issues
    .map((i) => (i.path.length === 0 ? i.message : `${formatPath(i.path)}: ${i.message}`))
    .join('; ')
}

function formatPath(path) {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? seg : `.${seg}`
  }
  return out
}

/** Standard Schema v1 (https://standardschema.dev): the vendor name every schema of this package reports. */
const STANDARD_SCHEMA_VENDOR = 'interceptor-ebpf'

/**
 * Builds a schema object around a throwing parse function, with zod's `parse`/`safeParse` surface and the
 * Standard Schema v1 `~standard` property that zod, valibot and arktype share, so libraries that accept a
 * standard schema (form, RPC and HTTP validators) accept these too.
 * Only ContractValidationError becomes `{success: false}` / `{issues}`; anything else is a bug and propagates.
 */
function makeSchema(name, parse) {
  const safeParse = (input) => {
    try {
      return { success: true, data: parse(input) }
    } catch (error) {
      if (error instanceof ContractValidationError) return { success: false, error }
      throw error
    }
  }
  const standard = Object.freeze({
    version: 1,
    vendor: STANDARD_SCHEMA_VENDOR,
    validate(value) {
      const result = safeParse(value)
      if (result.success) return { value: result.data }
      return { issues: result.error.issues.map((i) => ({ message: i.message, path: i.path })) }
    },
  })
  return Object.freeze({ name, parse, safeParse, '~standard': standard })
}

module.exports = { ContractValidationError, DataplaneError, makeSchema, formatIssues }
