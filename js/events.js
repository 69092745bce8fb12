'use strict'
// DataplanePacketEvent: parse (object, JSON text, NDJSON batch) and log-record serialization.
//
// Every rule is checked in Rust (crates/core/src/contract/events/). This file only moves values across the
// boundary the cheap way (see src/packet_event.rs for the measurements behind the design) and shapes the results:
// - object input: read the known keys once, pass their values to Rust as arguments, build the output from the
//   values that were validated (the per-key code is generated from the Rust key list: js/event-fields.js);
// - byte input: Rust validates and writes typed values and string offsets into a Float64Array; the object
//   is built here by slicing the text.

const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')

const SCHEMA = 'DataplanePacketEvent'

const tables = native.dataplaneEventTables()
const { checkObject, parseJson, parseNdjson } = native.dataplaneEventFastPaths()
const KEYS = Object.freeze(tables.keys)
const RECORD_SLOTS = tables.recordSlots
// Every line that names an event key is generated from the Rust key list and record layout (js/event-fields.js).
const { checkAndBuild, fromSlots } = require('./event-fields.js')(tables, checkObject)
// Reused for single-event byte input; each module instance (main thread or worker) has its own.
const slots = new Float64Array(RECORD_SLOTS)

function validateAndBuild(input, forLog) {
  // Non-objects get their issue from Rust too; this branch only routes them.
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ContractValidationError(SCHEMA, native.dataplaneEventRootIssues(input))
  }
  let count = 0
  for (const _ in input) count++
  // Values as arguments, not an object: N-API property reads cost more than the whole validation.
  const out = checkAndBuild(input, count, forLog)
  if (Array.isArray(out)) throw new ContractValidationError(SCHEMA, out)
  return out
}

/**
 * Parses a DataplanePacketEvent object. Strict: unknown keys, a reason code from another namespace, a verdict
 * or would_block that contradicts the code, and out-of-range enrichment fields are rejected, all issues listed.
 * Returns a new object with the keys in table order. Throws ContractValidationError.
 */
function parseDataplanePacketEvent(input) {
  return validateAndBuild(input, false)
}

/**
 * Validates an event and returns its log record: a new plain object, keys in table order starting with
 * code_namespace, `would_block` kept when false, empty optional strings dropped. Throws
 * ContractValidationError for an invalid event.
 */
function serializeDataplanePacketEventToLog(event) {
  return validateAndBuild(event, true)
}

const DataplanePacketEventSchema = makeSchema(SCHEMA, parseDataplanePacketEvent)

function decode(bytes) {
  if (Buffer.isBuffer(bytes)) return bytes.toString('utf8')
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
}

class Source {
  constructor(input) {
    this.input = input
    this.decoded = typeof input === 'string' ? input : undefined
  }
  text() {
    if (this.decoded === undefined) this.decoded = decode(this.input)
    return this.decoded
  }
}

/**
 * Parses one DataplanePacketEvent from JSON text: a string, Buffer or Uint8Array (UTF-8). Same rules and
 * output as parseDataplanePacketEvent(JSON.parse(text)), except that text JSON.parse accepts but serde_json
 * does not (lone-surrogate escapes) and duplicate keys are rejected. Invalid JSON gives one `invalid_json`
 * issue with line and column. Throws ContractValidationError; a TypeError for other input types.
 */
function parseDataplanePacketEventJson(input) {
  const extras = parseJson(input, slots)
  if (slots[0] === 0) throw new ContractValidationError(SCHEMA, extras)
  return fromSlots(slots, 0, new Source(input), extras)
}

/**
 * Parses a batch of newline-delimited JSON events (string, Buffer or Uint8Array). Every line is judged on its
 * own: `records` holds the valid events in input order, `errors` one entry per rejected line with its 1-based
 * line number. Blank lines are skipped, `\r\n` is accepted, the last line needs no newline. Never throws for
 * invalid content; a TypeError for other input types.
 */
function parseDataplanePacketEventNdjson(input) {
  const [s, count, extras, errors] = parseNdjson(input)
  const src = new Source(input)
  const records = new Array(count)
  for (let r = 0, o = 0; r < count; r++, o += RECORD_SLOTS) records[r] = fromSlots(s, o, src, extras)
  return { records, errors: errors === undefined ? [] : errors }
}

module.exports = {
  DATAPLANE_PACKET_EVENT_KEYS: KEYS,
  parseDataplanePacketEvent,
  DataplanePacketEventSchema,
  serializeDataplanePacketEventToLog,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
}
