'use strict'
// `Interceptor`: the eBPF dataplane as a JavaScript class. Every rule and every kernel operation is in Rust
// (src/interceptor.rs forwarding to crates/core/src/dataplane); this file turns the native results into promises,
// DataplaneErrors with stable codes, and the `events()` async iterator, and adds what only JavaScript has:
// AbortSignals and `await using`.

const native = require('./native.js')
const { ContractValidationError, DataplaneError } = require('./errors.js')
const { signalOption, withoutSignal, abortable, defineAsyncDispose } = require('./abort.js')

const ERROR_PREFIX = '{"code":"'

/**
 * Native errors carry a JSON body (`{code, message, issues?, verifierLog?}`, see src/interceptor.rs);
 * this rebuilds the JavaScript error users see: a ContractValidationError when it lists issues, otherwise a
 * DataplaneError with the body's code and message. Anything else is a bug or a napi type error and is rethrown.
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
  return new DataplaneError(body.code, body.message, {
    verifierLog: typeof body.verifierLog === 'string' ? body.verifierLog : undefined,
  })
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

// The WebAssembly build (contract API only) has no dataplane and no packed batches: `Interceptor.load` rejects
// there before any batch exists, so the layout below stays unset.
const hasDataplane = typeof native.loadInterceptor === 'function'
const tables = hasDataplane ? native.packedEventTables() : { layout: {} }
// Every offset, shift and flag of the packed layout comes from Rust (src/event_batch.rs, `packed`).
const {
  headerWords: HEADER_WORDS,
  count: COUNT,
  stringCount: STRING_COUNT,
  wordsPerEvent: WORDS,
  reason: W_REASON,
  kinds: W_KINDS,
  cgroupId: W_CGROUP_ID,
  dstIp: W_DST_IP,
  dstPort: W_DST_PORT,
  pid: W_PID,
  uid: W_UID,
  comm: W_COMM,
  ruleId: W_RULE_ID,
  dnsName: W_DNS_NAME,
  generationLow: W_GENERATION_LOW,
  generationHigh: W_GENERATION_HIGH,
  workloadId: W_WORKLOAD_ID,
  observedAt: W_OBSERVED_AT,
  kindMask: KIND_MASK,
  protocolShift: PROTOCOL_SHIFT,
  flagsShift: FLAGS_SHIFT,
  hasRuleId: HAS_RULE_ID,
  hasWorkloadId: HAS_WORKLOAD_ID,
  hasDestination: HAS_DESTINATION,
  hasDnsName: HAS_DNS_NAME,
} = tables.layout
const NAMESPACE = tables.namespace
const REASON = tables.reasonCodes
const VERDICT = tables.verdicts
const WOULD_BLOCK = tables.wouldBlock
const HOOK = tables.hooks
const PROTOCOL = tables.protocols
// A policy generation travels as two u32 words: low, then high.
const TWO_POW_32 = 2 ** 32

// Buffer#utf8Slice is what Buffer#toString('utf8', …) calls after its argument checks; use it when present.
const utf8Slice =
  typeof Buffer.prototype.utf8Slice === 'function'
    ? (buf, start, end) => buf.utf8Slice(start, end)
    : (buf, start, end) => buf.toString('utf8', start, end)

/**
 * Decodes a packed batch (layout: src/event_batch.rs `packed`) into DataplanePacketEvent objects in
 * SPEC 3 key order. Keys are added in that order and optional keys only when present, so every object has
 * exactly the keys of its code.
 * @param {Buffer} buf
 */
function decodePackedBatch(buf) {
  const words = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf)
  const u32 = new Uint32Array(words.buffer, words.byteOffset, words.byteLength >>> 2)
  const count = u32[COUNT]
  const stringCount = u32[STRING_COUNT]
  const endsAt = HEADER_WORDS + count * WORDS
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
    const w = HEADER_WORDS + n * WORDS
    const code = u32[w + W_REASON]
    const kinds = u32[w + W_KINDS]
    const flags = kinds >>> FLAGS_SHIFT
    const e = { code_namespace: NAMESPACE, reason_code: REASON[code], verdict: VERDICT[code] }
    const wouldBlock = WOULD_BLOCK[code]
    if (wouldBlock !== null) e.would_block = wouldBlock
    e.hook = HOOK[kinds & KIND_MASK]
    e.cgroup_id = strings[u32[w + W_CGROUP_ID]]
    e.protocol = PROTOCOL[(kinds >>> PROTOCOL_SHIFT) & KIND_MASK]
    if (flags & HAS_DESTINATION) {
      e.dst_ip = strings[u32[w + W_DST_IP]]
      e.dst_port = u32[w + W_DST_PORT]
    }
    e.pid = u32[w + W_PID]
    e.uid = u32[w + W_UID]
    e.comm = strings[u32[w + W_COMM]]
    if (flags & HAS_RULE_ID) e.rule_id = strings[u32[w + W_RULE_ID]]
    if (flags & HAS_DNS_NAME) e.dns_name = strings[u32[w + W_DNS_NAME]]
    e.policy_generation = u32[w + W_GENERATION_LOW] + u32[w + W_GENERATION_HIGH] * TWO_POW_32
    if (flags & HAS_WORKLOAD_ID) e.workload_id = strings[u32[w + W_WORKLOAD_ID]]
    e.observed_at = strings[u32[w + W_OBSERVED_AT]]
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

const constructing = Symbol('Interceptor.load')

/**
 * The signal of the options of a call that has no other option (`{signal?}`): strict like every options object
 * of this package, so a misspelt key is not silently ignored.
 */
function callOptionsSignal(options, schema) {
  if (options === undefined || options === null) return undefined
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new ContractValidationError(schema, [{ path: [], code: 'invalid_type', message: 'expected an object: {signal?}' }])
  }
  const unknown = Object.keys(options).filter((k) => k !== 'signal')
  if (unknown.length > 0) {
    throw new ContractValidationError(schema, [
      {
        path: [],
        code: 'unrecognized_keys',
        message: `unrecognized ${unknown.length === 1 ? 'key' : 'keys'}: ${unknown.map((k) => `\`${k}\``).join(', ')}`,
      },
    ])
  }
  return signalOption(options, schema)
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

  /**
   * Loads (or adopts the pinned) dataplane; resolves once the four programs are attached. `options.signal`
   * stays in JavaScript (Rust reads the other options strictly). An abort before the load starts loads nothing;
   * a load already under way on the libuv pool cannot be stopped: the call rejects at once and the dataplane it
   * then brings up is closed without detaching, which leaves the kernel as any loader's `close()` does.
   */
  static async load(options) {
    if (!hasDataplane) {
      const unavailable = native.dataplaneUnavailableError()
      throw new DataplaneError(unavailable.code, unavailable.message, { cause: unavailable.cause })
    }
    const signal = signalOption(options, 'InterceptorOptions')
    signal?.throwIfAborted()
    const nativeInterceptor = await abortable(
      signal,
      () => callAsync(() => native.loadInterceptor(withoutSignal(options))),
      (late) => late.close().catch(() => {}),
    )
    return new Interceptor(constructing, nativeInterceptor)
  }

  /**
   * Validates the whole snapshot with the strict Rust parser, then applies it atomically. An object is
   * serialized with JSON.stringify first (so `undefined` values are dropped, like absent keys); a string or
   * bytes are read as JSON text. `options.signal`: an abort before the call leaves the policy untouched; once the
   * replacement runs it completes or fails whole (it is atomic), and the call rejects at once without waiting:
   * `status().generation` says whether it took effect.
   */
  replacePolicySnapshot(snapshot, options) {
    return callAsync(async () => {
      const signal = callOptionsSignal(options, 'ReplacePolicySnapshotOptions')
      signal?.throwIfAborted()
      const text = snapshotText(snapshot)
      return abortable(signal, () => this.#native.replacePolicySnapshot(text))
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
   * abandoned iterator when it is garbage collected. `options.signal` ends the iterator too: a pending `next()`
   * rejects with `signal.reason` at the abort and unsubscribes (the events the subscription still held are
   * dropped and counted like those of any ended iterator); with none pending, the next call does. Once, then
   * later calls report the end. The signal is listened to only while a `next()` is pending, so it holds nothing
   * of an iterator between calls either.
   */
  eventBatches(options) {
    const signal = signalOption(options, 'InterceptorEventsOptions')
    const max = callSync(() => native.eventBatchSize(withoutSignal(options)))
    const nativeInterceptor = this.#native
    let subscription = null
    let done = false
    const end = () => {
      done = true
      if (subscription !== null) subscription.close()
    }
    // Closing the subscription resolves a pending nextBatch with the end of the stream at once.
    const onAbort = () => subscription?.close()
    return {
      [Symbol.asyncIterator]() {
        return this
      },
      async next() {
        if (done) return { value: undefined, done: true }
        if (signal?.aborted) {
          end()
          throw signal.reason
        }
        if (subscription === null) subscription = callSync(() => nativeInterceptor.subscribeEvents())
        signal?.addEventListener('abort', onAbort, { once: true })
        let batch
        try {
          batch = await callAsync(() => subscription.nextBatch(max))
        } finally {
          signal?.removeEventListener('abort', onAbort)
        }
        if (signal?.aborted && !done) {
          end()
          throw signal.reason
        }
        if (batch === null) {
          end()
          return { value: undefined, done: true }
        }
        return { value: decodeBatch(batch), done: false }
      },
      async return() {
        end()
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

// `await using interceptor = await Interceptor.load(...)`: leaving the scope is `close()` without `detach`, so
// the pinned programs keep enforcing, as after any close (detach explicitly to stop enforcement).
defineAsyncDispose(Interceptor, function asyncDispose() {
  return this.close()
})

/**
 * Which build of the package serves this process: `'native'` (the Linux addon, with the dataplane) or
 * `'wasm32-wasi'` (the WebAssembly fallback: the contract API only, `Interceptor.load` rejects).
 */
const bindingTarget = native.bindingTarget

module.exports = { Interceptor, bindingTarget }
// For bench/dataplane/codec.mjs only: not enumerable, so index.js's spread does not publish it.
Object.defineProperty(module.exports, 'decodeEventBatch', { value: decodeBatch, enumerable: false })
