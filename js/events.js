'use strict'
// DataplanePacketEvent: parse (object, JSON text, NDJSON batch) and log-record serialization.
//
// Every rule is checked in Rust (crates/core/src/contract/events/). This file only moves values across the
// boundary the cheap way (see src/events.rs for the measurements behind the design) and shapes the results:
// - object input: read the known keys here, pass their values to Rust as arguments, build the output from the
//   values that were validated;
// - byte input: Rust validates and writes typed values and string offsets into a Float64Array; the object
//   is built here by slicing the text.

const native = require('./native.js')
const { ContractValidationError, makeSchema } = require('./errors.js')

const SCHEMA = 'DataplanePacketEvent'
const NAMESPACE = 'dataplane_verdict'

const tables = native.dataplaneEventTables()
const { checkObject, parseJson, parseNdjson } = native.dataplaneEventFastPaths()
const KEYS = Object.freeze(tables.keys)
const CODES = tables.codes
const VERDICTS = tables.verdicts
const WOULD_BLOCK = tables.wouldBlock
const HOOKS = tables.hooks
const PROTOCOLS = tables.protocols
const RECORD_SLOTS = tables.recordSlots
// Reused for single-event byte input; each module instance (main thread or worker) has its own.
const slots = new Float64Array(RECORD_SLOTS)

// Bits of the empty-string mask Rust returns (bit = index in KEYS): the fields the log record drops.
const MESSAGE = 1 << KEYS.indexOf('message')
const COMM = 1 << KEYS.indexOf('comm')
const RULE_ID = 1 << KEYS.indexOf('rule_id')
const WORKLOAD_ID = 1 << KEYS.indexOf('workload_id')

// The record layout of parseJson/parseNdjson, defined in src/events.rs.
const {
  code: S_CODE,
  hook: S_HOOK,
  protocol: S_PROTOCOL,
  dstPort: S_DST_PORT,
  pid: S_PID,
  uid: S_UID,
  policyGeneration: S_POLICY_GENERATION,
  cgroupId: S_CGROUP_ID,
  message: S_MESSAGE,
  dstIp: S_DST_IP,
  comm: S_COMM,
  ruleId: S_RULE_ID,
  workloadId: S_WORKLOAD_ID,
  observedAt: S_OBSERVED_AT,
} = tables.slots

function keyNames(input) {
  const names = []
  for (const k in input) names.push(k)
  return names
}


/**
 * Builds the output object in table order from validated values. `drop` is the empty-string mask for the log
 * record (0 for parse output, which keeps empty strings).
 */
function build(
  codeNamespace,
  reasonCode,
  verdict,
  wouldBlock,
  hook,
  cgroupId,
  message,
  protocol,
  dstIp,
  dstPort,
  pid,
  uid,
  comm,
  ruleId,
  policyGeneration,
  workloadId,
  observedAt,
  drop,
) {
  const out = { code_namespace: codeNamespace, reason_code: reasonCode, verdict }
  if (wouldBlock !== undefined) out.would_block = wouldBlock
  if (hook !== undefined) out.hook = hook
  if (cgroupId !== undefined) out.cgroup_id = cgroupId
  if (message !== undefined && !(drop & MESSAGE)) out.message = message
  if (protocol !== undefined) out.protocol = protocol
  if (dstIp !== undefined) out.dst_ip = dstIp
  if (dstPort !== undefined) out.dst_port = dstPort
  if (pid !== undefined) out.pid = pid
  if (uid !== undefined) out.uid = uid
  if (comm !== undefined && !(drop & COMM)) out.comm = comm
  if (ruleId !== undefined && !(drop & RULE_ID)) out.rule_id = ruleId
  if (policyGeneration !== undefined) out.policy_generation = policyGeneration
  if (workloadId !== undefined && !(drop & WORKLOAD_ID)) out.workload_id = workloadId
  if (observedAt !== undefined) out.observed_at = observedAt
  return out
}

function validateAndBuild(input, forLog) {
  // Non-objects get their issue from Rust too; this branch only routes them.
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ContractValidationError(SCHEMA, native.dataplaneEventRootIssues(input))
  }
  const codeNamespace = input.code_namespace
  const reasonCode = input.reason_code
  const verdict = input.verdict
  const wouldBlock = input.would_block
  const hook = input.hook
  const cgroupId = input.cgroup_id
  const message = input.message
  const protocol = input.protocol
  const dstIp = input.dst_ip
  const dstPort = input.dst_port
  const pid = input.pid
  const uid = input.uid
  const comm = input.comm
  const ruleId = input.rule_id
  const policyGeneration = input.policy_generation
  const workloadId = input.workload_id
  const observedAt = input.observed_at
  let count = 0
  for (const _ in input) count++
  // Arguments, not an object: N-API property reads cost more than the whole validation.
  let r = checkObject(
    count,
    codeNamespace,
    reasonCode,
    verdict,
    wouldBlock,
    hook,
    cgroupId,
    message,
    protocol,
    dstIp,
    dstPort,
    pid,
    uid,
    comm,
    ruleId,
    policyGeneration,
    workloadId,
    observedAt,
  )
  // The count says the object has keys beyond the ones read (or known keys set to undefined): ask again with
  // the names so Rust can list the unknown ones.
  if (r === -1) {
    r = checkObject(
      keyNames(input),
      codeNamespace,
      reasonCode,
      verdict,
      wouldBlock,
      hook,
      cgroupId,
      message,
      protocol,
      dstIp,
      dstPort,
      pid,
      uid,
      comm,
      ruleId,
      policyGeneration,
      workloadId,
      observedAt,
    )
  }
  if (typeof r !== 'number') throw new ContractValidationError(SCHEMA, r)
  return build(
    codeNamespace,
    reasonCode,
    verdict,
    wouldBlock,
    hook,
    cgroupId,
    message,
    protocol,
    dstIp,
    dstPort,
    pid,
    uid,
    comm,
    ruleId,
    policyGeneration,
    workloadId,
    observedAt,
    forLog ? r : 0,
  )
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

// Builds one event from the record Rust wrote at `s[o]`. `src.text()` gives the input as a JS string (decoded
// at most once, only when a string field is sliced from it).
function fromSlots(s, o, src, extras) {
  const code = s[o + S_CODE]
  const out = { code_namespace: NAMESPACE, reason_code: CODES[code], verdict: VERDICTS[code] }
  const wb = WOULD_BLOCK[code]
  if (wb !== null) out.would_block = wb
  let v = s[o + S_HOOK]
  if (v !== 0) out.hook = HOOKS[v]
  v = s[o + S_CGROUP_ID]
  if (v !== -1) out.cgroup_id = v >= 0 ? src.text().slice(v, s[o + S_CGROUP_ID + 1]) : extras[-v - 2]
  v = s[o + S_MESSAGE]
  if (v !== -1) out.message = v >= 0 ? src.text().slice(v, s[o + S_MESSAGE + 1]) : extras[-v - 2]
  v = s[o + S_PROTOCOL]
  if (v !== 0) out.protocol = PROTOCOLS[v]
  v = s[o + S_DST_IP]
  if (v !== -1) out.dst_ip = v >= 0 ? src.text().slice(v, s[o + S_DST_IP + 1]) : extras[-v - 2]
  v = s[o + S_DST_PORT]
  if (v !== -1) out.dst_port = v
  v = s[o + S_PID]
  if (v !== -1) out.pid = v
  v = s[o + S_UID]
  if (v !== -1) out.uid = v
  v = s[o + S_COMM]
  if (v !== -1) out.comm = v >= 0 ? src.text().slice(v, s[o + S_COMM + 1]) : extras[-v - 2]
  v = s[o + S_RULE_ID]
  if (v !== -1) out.rule_id = v >= 0 ? src.text().slice(v, s[o + S_RULE_ID + 1]) : extras[-v - 2]
  v = s[o + S_POLICY_GENERATION]
  if (v !== -1) out.policy_generation = v
  v = s[o + S_WORKLOAD_ID]
  if (v !== -1) out.workload_id = v >= 0 ? src.text().slice(v, s[o + S_WORKLOAD_ID + 1]) : extras[-v - 2]
  v = s[o + S_OBSERVED_AT]
  if (v !== -1) out.observed_at = v >= 0 ? src.text().slice(v, s[o + S_OBSERVED_AT + 1]) : extras[-v - 2]
  return out
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
