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

/**
 * Builds a schema object with zod's `parse`/`safeParse` surface around a throwing parse function.
 * Only ContractValidationError becomes `{success: false}`; anything else is a bug and propagates.
 */
function makeSchema(name, parse) {
  return Object.freeze({
    name,
    parse,
    safeParse(input) {
      try {
        return { success: true, data: parse(input) }
      } catch (error) {
        if (error instanceof ContractValidationError) return { success: false, error }
        throw error
      }
    },
  })
}

module.exports = { ContractValidationError, makeSchema, formatIssues }
