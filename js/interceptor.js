'use strict'
// `Interceptor`: the eBPF dataplane as a JavaScript class. Every rule and every kernel operation is in Rust
// (src/node/interceptor.rs forwarding to src/dataplane); this file turns the native results into promises,
// errors with stable codes, and the `events()` async iterator.

const native = require('../binding.js')
const { ContractValidationError } = require('./errors.js')

const ERROR_PREFIX = '{"code":"'

/**
 * Native errors carry a JSON body (`{code, message, issues?, verifierLog?}`, see src/node/interceptor.rs);
 * this rebuilds the JavaScript error users see. Anything else is a bug or a napi type error and is rethrown.
 */
function toPublicError(error) {
  if (!(error instanceof Error) || typeof error.message !== 'string' || !error.message.startsWith(ERROR_PREFIX)) {
    return error
  }
  let body
  try {
    body = JSON.parse(error.message)
  } catch {
    return error
  }
  if (Array.isArray(body.issues)) return new ContractValidationError(body.schema, body.issues)
  const out = new Error(body.message)
  out.code = body.code
  if (typeof body.verifierLog === 'string') out.verifierLog = body.verifierLog
  return out
}

function callSync(fn) {
  try {
    return fn()
  } catch (error) {
    throw toPublicError(error)
  }
}

async function callAsync(fn) {
  try {
    return await fn()
  } catch (error) {
    throw toPublicError(error)
  }
}

const tables = native.packedEventTables()
const WORDS = tables.wordsPerEvent
const HAS_RULE_ID = tables.hasRuleId
const HAS_WORKLOAD_ID = tables.hasWorkloadId
const REASON = tables.reasonCodes
const VERDICT = tables.verdicts
const WOULD_BLOCK = tables.wouldBlock
const HOOK = tables.hooks
const PROTOCOL = tables.protocols
const TWO_POW_32 = 2 ** 32

// Buffer#utf8Slice is what Buffer#toString('utf8', …) calls after its argument checks; use it when present.
const utf8Slice =
  typeof Buffer.prototype.utf8Slice === 'function'
    ? (buf, start, end) => buf.utf8Slice(start, end)
    : (buf, start, end) => buf.toString('utf8', start, end)

/**
 * Decodes a packed batch (layout: src/node/event_batch.rs `to_packed`) into DataplanePacketEvent objects in
 * SPEC 3 key order. Keys are added in that order and optional keys only when present, so every object has
 * exactly the keys of its code.
 * @param {Buffer} buf
 */
function decodePackedBatch(buf) {
  const words = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf)
  const u32 = new Uint32Array(words.buffer, words.byteOffset, words.byteLength >>> 2)
  const count = u32[0]
  const stringCount = u32[1]
  const endsAt = 3 + count * WORDS
  const bytesAt = 4 * (endsAt + stringCount)
  const strings = new Array(stringCount)
  let start = 0
  for (let i = 0; i < stringCount; i++) {
    const end = u32[endsAt + i]
    strings[i] = utf8Slice(words, bytesAt + start, bytesAt + end)
    start = end
  }
  const out = new Array(count)
  for (let n = 0; n < count; n++) {
    const w = 3 + n * WORDS
    const code = u32[w]
    const packed = u32[w + 1]
    const flags = packed >>> 16
    const e = { code_namespace: 'dataplane_verdict', reason_code: REASON[code], verdict: VERDICT[code] }
    const wouldBlock = WOULD_BLOCK[code]
    if (wouldBlock !== null) e.would_block = wouldBlock
    e.hook = HOOK[packed & 0xff]
    e.cgroup_id = strings[u32[w + 2]]
    e.protocol = PROTOCOL[(packed >>> 8) & 0xff]
    e.dst_ip = strings[u32[w + 3]]
    e.dst_port = u32[w + 4]
    e.pid = u32[w + 5]
    e.uid = u32[w + 6]
    e.comm = strings[u32[w + 7]]
    if (flags & HAS_RULE_ID) e.rule_id = strings[u32[w + 8]]
    e.policy_generation = u32[w + 9] + u32[w + 10] * TWO_POW_32
    if (flags & HAS_WORKLOAD_ID) e.workload_id = strings[u32[w + 11]]
    e.observed_at = strings[u32[w + 12]]
    out[n] = e
  }
  return out
}

/** Decodes any of the three measured transports (only `packed` is used by `events()`). */
function decodeBatch(batch) {
  if (Buffer.isBuffer(batch)) return decodePackedBatch(batch)
  if (typeof batch === 'string') return JSON.parse(batch)
  return batch
}

const MAX_BATCH = 65536
const DEFAULT_BATCH = 4096
const constructing = Symbol('Interceptor.load')

function batchSizeOf(options, schema) {
  if (options === undefined || options === null) return DEFAULT_BATCH
  const issues = []
  if (typeof options !== 'object' || Array.isArray(options)) {
    issues.push({ path: [], code: 'invalid_type', message: `expected an object, received ${typeof options}` })
  } else {
    const unknown = Object.keys(options).filter((k) => k !== 'batchSize')
    if (unknown.length > 0) {
      issues.push({
        path: [],
        code: 'unrecognized_keys',
        message: `unrecognized key(s) ${unknown.map((k) => `\`${k}\``).join(', ')}; accepted keys are batchSize`,
      })
    }
    const size = options.batchSize
    if (size !== undefined && !(Number.isInteger(size) && size >= 1 && size <= MAX_BATCH)) {
      issues.push({
        path: ['batchSize'],
        code: 'invalid_value',
        message: `expected an integer from 1 to ${MAX_BATCH}`,
      })
    }
    if (issues.length === 0) return size === undefined ? DEFAULT_BATCH : size
  }
  throw new ContractValidationError(schema, issues)
}

function snapshotText(snapshot) {
  if (typeof snapshot === 'string' || Buffer.isBuffer(snapshot)) return snapshot
  if (snapshot instanceof Uint8Array) return Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength)
  let text
  try {
    text = JSON.stringify(snapshot)
  } catch (error) {
    // A BigInt or a cycle: not representable as the JSON the parser reads.
    throw new ContractValidationError('PolicySnapshot', [
      { path: [], code: 'invalid_type', message: `snapshot is not JSON-serializable: ${error.message}` },
    ])
  }
  if (text === undefined) {
    throw new ContractValidationError('PolicySnapshot', [
      { path: [], code: 'invalid_type', message: `expected an object, received ${typeof snapshot}` },
    ])
  }
  return text
}

class Interceptor {
  #native

  /** @private use `Interceptor.load()` */
  constructor(token, nativeInterceptor) {
    if (token !== constructing) throw new TypeError('use Interceptor.load(options) to create an Interceptor')
    this.#native = nativeInterceptor
  }

  /** Loads (or adopts the pinned) dataplane; resolves once the four programs are attached. */
  static async load(options) {
    const nativeInterceptor = await callAsync(() => native.loadInterceptor(options))
    return new Interceptor(constructing, nativeInterceptor)
  }

  /**
   * Validates the whole snapshot with the strict Rust parser, then applies it atomically. An object is
   * serialized with JSON.stringify first (so `undefined` values are dropped, like absent keys); a string or
   * bytes are read as JSON text.
   */
  replacePolicySnapshot(snapshot) {
    return callAsync(async () => {
      const text = snapshotText(snapshot)
      return this.#native.replacePolicySnapshot(text)
    })
  }

  upsertManagedCgroup(target) {
    return callSync(() => this.#native.upsertManagedCgroup(target))
  }

  deleteManagedCgroup(target) {
    return callSync(() => this.#native.deleteManagedCgroup(target))
  }

  setGlobalMode(mode) {
    callSync(() => this.#native.setGlobalMode(mode))
  }

  setCgroupMode(target) {
    callSync(() => this.#native.setCgroupMode(target))
  }

  setFailMode(mode) {
    callSync(() => this.#native.setFailMode(mode))
  }

  heartbeat() {
    callSync(() => this.#native.heartbeat())
  }

  /** Stops the loader's own heartbeat timer (tests use it to reach the degraded state). */
  pauseHeartbeatTimer() {
    callSync(() => this.#native.pauseHeartbeatTimer())
  }

  status() {
    return callSync(() => this.#native.status())
  }

  get closed() {
    return this.#native.closed
  }

  /**
   * Batches of events as arrays: one native call per batch. Ends when `close()` is called. Every iterator is
   * its own subscription and sees every event from its first `next()` on (a slow iterator loses events, counted
   * in `status().droppedInQueue`, without slowing the others). Nothing is requested from the kernel side until
   * the first `next()`, and nothing is pending between calls, so an iterator nobody drives keeps no handle open
   * and never holds the process alive; `return()` (a `break` out of `for await`) unsubscribes at once, an
   * abandoned iterator when it is garbage collected.
   */
  eventBatches(options) {
    const max = batchSizeOf(options, 'InterceptorEventsOptions')
    const nativeInterceptor = this.#native
    let subscription = null
    let done = false
    return {
      [Symbol.asyncIterator]() {
        return this
      },
      async next() {
        if (done) return { value: undefined, done: true }
        if (subscription === null) subscription = callSync(() => nativeInterceptor.subscribeEvents())
        const batch = await callAsync(() => subscription.nextBatch(max))
        if (batch === null) {
          done = true
          subscription.close()
          return { value: undefined, done: true }
        }
        return { value: decodeBatch(batch), done: false }
      },
      async return() {
        done = true
        if (subscription !== null) subscription.close()
        return { value: undefined, done: true }
      },
    }
  }

  /** Every event as a DataplanePacketEvent (SPEC 3 key order); ends when `close()` is called. */
  async *events(options) {
    for await (const batch of this.eventBatches(options)) {
      for (const event of batch) yield event
    }
  }

  /**
   * Ends every `events()` iterator, stops the heartbeat and the ring-buffer reader. `detach: true` also
   * detaches the programs and removes the pins (enforcement stops); by default they stay pinned and keep
   * enforcing, ready for the next `Interceptor.load()` with the same `pinDir` to adopt.
   */
  close(options) {
    return callAsync(() => this.#native.close(options))
  }
}

module.exports = { Interceptor }
// For bench/dataplane/codec.mjs only: not enumerable, so index.js's spread does not publish it.
Object.defineProperty(module.exports, 'decodeEventBatch', { value: decodeBatch, enumerable: false })
