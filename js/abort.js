'use strict'
// The `{signal}` option of the async calls of `Interceptor` and `ControlClient`, and `await using`. An aborted
// call rejects with `signal.reason` (a DOMException named `AbortError` unless the caller gave another reason), as
// `fetch` and Node's own promise APIs do. Work that has started in the kernel or in the agent cannot be taken
// back: aborting stops the waiting, and each caller below says what becomes of the work.

const { ContractValidationError } = require('./errors.js')

/**
 * `options.signal` when it is an AbortSignal; `undefined` when absent (or `null`, "not given" as elsewhere in
 * this package). Anything else is refused before any work starts. Duck-typed like Node's own check, so a signal
 * from another realm (a `vm` context) is accepted too.
 */
function signalOption(options, schema) {
  const signal = options !== null && typeof options === 'object' ? options.signal : undefined
  if (signal === undefined || signal === null) return undefined
  if (typeof signal !== 'object' || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw new ContractValidationError(schema, [{ path: ['signal'], code: 'invalid_type', message: 'expected an AbortSignal' }])
  }
  return signal
}

/**
 * `options` without its `signal` key, for options that Rust reads strictly (an unknown key is an issue there).
 * Anything that is not a plain object is passed on unchanged, for Rust to report.
 */
function withoutSignal(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options) || !('signal' in options)) return options
  const { signal: _signal, ...rest } = options
  return rest
}

/**
 * Settles like `work()`, or rejects with `signal.reason` as soon as the signal aborts, whichever comes first.
 * `work` is not called when the signal is already aborted. What `work` yields after an abort is handed to
 * `onLateResult` (to release it); its late failure is dropped: the caller already has its answer.
 */
function abortable(signal, work, onLateResult) {
  if (signal === undefined) return work()
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    let aborted = false
    const onAbort = () => {
      aborted = true
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    let promise
    try {
      promise = Promise.resolve(work())
    } catch (error) {
      promise = Promise.reject(error)
    }
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        if (aborted) onLateResult?.(value)
        else resolve(value)
      },
      (error) => {
        signal.removeEventListener('abort', onAbort)
        if (!aborted) reject(error)
      },
    )
  })
}

/**
 * The keys an `await using` declaration looks for: `Symbol.asyncDispose` where the runtime defines it (Node.js
 * 20.4 and later: there it is `Symbol.for('nodejs.asyncDispose')`; natively in newer V8), and
 * `Symbol.for('nodejs.asyncDispose')` itself, which Node.js's own classes use, for code that polyfills
 * `Symbol.asyncDispose` with it after this module loaded.
 */
const asyncDisposeKeys = [...new Set([Symbol.asyncDispose, Symbol.for('nodejs.asyncDispose')].filter((k) => typeof k === 'symbol'))]

/** Defines `[Symbol.asyncDispose]()` on `Class.prototype` as `dispose`, under every key above. */
function defineAsyncDispose(Class, dispose) {
  for (const key of asyncDisposeKeys) {
    Object.defineProperty(Class.prototype, key, { value: dispose, writable: true, configurable: true, enumerable: false })
  }
}

module.exports = { signalOption, withoutSignal, abortable, defineAsyncDispose }
