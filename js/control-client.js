'use strict'
// `ControlClient`: the controller side of the agent's control socket. Node's `net` carries the bytes; every
// rule is Rust's: requests are checked and written by the contract (`controlClientRequestLine`), replies read
// by the strict per-command parser and matched to their request (`controlClientReadReply`), events by the
// DataplanePacketEvent parser; which socket `connect()` picks is the contract's rule too (`controlSocketPath`, as
// `ctl`). This file only frames lines, matches ids, and turns outcomes into values, errors, an async iterator,
// aborted calls and `await using`.

const net = require('node:net')
const native = require('./native.js')
const { ContractValidationError } = require('./errors.js')
const { ControlProtocolRequestError } = require('./control.js')
const { parseDataplanePacketEventJson } = require('./events.js')
const { signalOption, defineAsyncDispose } = require('./abort.js')

/** The rejections of requests whose bytes never reached the agent (a failed write): safe to send again. */
const unsentRequests = new WeakSet()

/** Longest line either side may send, excluding the `\n` (SPEC 3): the contract's limit, the agent's own. */
const MAX_LINE_BYTES = native.MAX_CONTROL_LINE_BYTES
const DEFAULT_TIMEOUT_MS = 10_000
/** Events buffered for a slow consumer before the socket is paused (the agent then counts what it drops). */
const EVENT_HIGH_WATER = 4096

/**
 * Why a control call failed. `code`: ERR_CONTROL_REFUSED (the agent answered with a failure: `reason_code`,
 * `controlError`), ERR_CONTROL_TIMEOUT, ERR_CONTROL_CONNECTION (cannot connect), ERR_CONTROL_CLOSED (the
 * connection ended), ERR_CONTROL_BAD_RESPONSE (not a valid reply: `issues`).
 */
class ControlClientError extends Error {
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause })
    this.name = 'ControlClientError'
    this.code = code
    if (extra.controlError !== undefined) {
      this.controlError = extra.controlError
      this.reason_code = extra.controlError.reason_code
    }
    if (extra.command !== undefined) this.command = extra.command
    if (extra.requestId !== undefined) this.requestId = extra.requestId
    if (extra.issues !== undefined) this.issues = extra.issues
  }
}

function positiveTimeout(value, name) {
  if (value === undefined) return DEFAULT_TIMEOUT_MS
  if (!Number.isInteger(value) || value < 1 || value > 2_147_483_647) {
    throw new ContractValidationError(name, [
      { path: ['timeoutMs'], code: 'invalid_value', message: 'expected an integer number of ms from 1 to 2147483647' },
    ])
  }
  return value
}

/** Splits a byte stream into `\n`-terminated lines of at most MAX_LINE_BYTES. */
class LineSplitter {
  constructor() {
    this.chunks = []
    this.length = 0
  }

  /** Calls `onLine(buffer)` per complete line; returns false when a line exceeds the limit. */
  push(chunk, onLine) {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      let line = chunk.subarray(start, nl)
      if (this.length > 0) {
        this.chunks.push(line)
        line = Buffer.concat(this.chunks, this.length + line.length)
        this.chunks = []
        this.length = 0
      }
      if (line.length > MAX_LINE_BYTES) return false
      onLine(line)
      start = nl + 1
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start)
      this.chunks.push(rest)
      this.length += rest.length
      if (this.length > MAX_LINE_BYTES) return false
    }
    return true
  }
}

function requestLine(command, payload, id) {
  const request = { command, id }
  if (payload !== undefined) request.payload = payload
  let json
  try {
    json = JSON.stringify(request)
  } catch (error) {
    throw new ContractValidationError(command, [
      { path: ['payload'], code: 'invalid_type', message: `payload is not JSON: ${error.message}` },
    ])
  }
  const checked = native.controlClientRequestLine(json)
  if (checked.issues != null) throw new ControlProtocolRequestError(checked.issues, JSON.parse(checked.rejection))
  return `${checked.line}\n`
}

/** Connects to `path`; an abort destroys the half-open socket and rejects with `signal.reason`. */
function connectSocket(path, timeoutMs, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const socket = net.createConnection({ path })
    const settle = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const onAbort = () => {
      settle()
      socket.destroy()
      reject(signal.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => {
      settle()
      socket.destroy()
      reject(new ControlClientError('ERR_CONTROL_TIMEOUT', `no connection to the agent at ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once('connect', () => {
      settle()
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (error) => {
      settle()
      reject(
        new ControlClientError('ERR_CONTROL_CONNECTION', `cannot connect to the agent at ${path}: ${error.message}`, {
          cause: error,
        }),
      )
    })
  })
}

/** One connection carrying pipelined requests; replies come in order, each matched by its id. */
class Connection {
  constructor(socket, onClose) {
    this.socket = socket
    this.splitter = new LineSplitter()
    this.pending = new Map()
    this.closed = false
    socket.on('data', (chunk) => {
      if (!this.splitter.push(chunk, (line) => this.onLine(line))) {
        this.fail(new ControlClientError('ERR_CONTROL_BAD_RESPONSE', `a reply line exceeds ${MAX_LINE_BYTES} bytes`))
      }
    })
    socket.on('error', (error) => {
      this.fail(new ControlClientError('ERR_CONTROL_CLOSED', `control connection failed: ${error.message}`, { cause: error }))
    })
    socket.on('close', () => {
      this.fail(new ControlClientError('ERR_CONTROL_CLOSED', 'the agent closed the connection'))
      onClose(this)
    })
  }

  onLine(line) {
    // The agent answers in order; a reply without a readable id answers the oldest request.
    const [id, entry] = this.pending.entries().next().value ?? []
    if (entry === undefined) return
    this.pending.delete(id)
    clearTimeout(entry.timer)
    const reply = native.controlClientReadReply(line, entry.command, id)
    if (reply.issues != null) {
      const error = new ControlClientError(
        'ERR_CONTROL_BAD_RESPONSE',
        `invalid reply to ${entry.command}: ${reply.issues.map((i) => i.message).join('; ')}`,
        { command: entry.command, requestId: id, issues: reply.issues },
      )
      entry.reject(error)
      this.fail(error)
      return
    }
    const response = JSON.parse(reply.json)
    if (response.ok) entry.resolve(response.data)
    else {
      entry.reject(
        new ControlClientError('ERR_CONTROL_REFUSED', `${response.error.reason_code}: ${response.error.message}`, {
          controlError: response.error,
          command: entry.command,
          requestId: id,
        }),
      )
    }
  }

  /** Rejects every pending request and closes the socket. */
  fail(error) {
    if (!this.closed) {
      this.closed = true
      this.socket.destroy()
    }
    for (const [id, entry] of this.pending) {
      clearTimeout(entry.timer)
      const rejection = new ControlClientError(error.code, error.message, { command: entry.command, requestId: id, cause: error })
      if (entry.unsent) unsentRequests.add(rejection)
      entry.reject(rejection)
    }
    this.pending.clear()
  }

  /**
   * Writes one request and resolves with its reply. An abort (`signal`) cannot unsend a written line: the
   * request stays in `pending`, in its place in the agent's reply order, and its reply is read and dropped when
   * it comes, so the connection keeps answering the requests after it. Its deadline stays too: if no reply
   * comes, the connection is closed then, as after any timeout.
   */
  send(line, command, id, timeoutMs, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason)
        return
      }
      const timer = setTimeout(() => {
        // The reply may still come: the connection is closed so a late reply cannot answer a newer request.
        this.pending.delete(id)
        entry.reject(
          new ControlClientError('ERR_CONTROL_TIMEOUT', `no reply to ${command} within ${timeoutMs} ms`, {
            command,
            requestId: id,
          }),
        )
        this.fail(new ControlClientError('ERR_CONTROL_CLOSED', `closed after a request timed out`))
      }, timeoutMs)
      const onAbort = () => {
        entry.resolve = () => {}
        entry.reject = () => {}
        reject(signal.reason)
      }
      const done = (settle) => (value) => {
        signal?.removeEventListener('abort', onAbort)
        settle(value)
      }
      const entry = { command, resolve: done(resolve), reject: done(reject), timer, unsent: false }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, entry)
      // A write that fails never reached the agent (the kernel refused it: EPIPE, the agent's end was already
      // closed). Node calls this before it emits the socket's 'error', so fail() below sees the flag.
      this.socket.write(line, (error) => {
        if (error) entry.unsent = true
      })
    })
  }
}

class ControlClient {
  /**
   * Connects to the agent. `socketPath` defaults, as for `interceptor-ebpf ctl`, to `BROKER_EBPF_CONTROL_SOCKET`
   * when it is set and not empty, then to the default path (`contract::config::controller_socket_path`);
   * `options.timeoutMs` (default 10000) bounds the connection and every request; `options.signal` aborts the
   * connecting (the half-open socket is closed).
   */
  static async connect(socketPath, options = {}) {
    if (socketPath != null && (typeof socketPath !== 'string' || socketPath.length === 0)) {
      throw new ContractValidationError('ControlClient', [
        { path: ['socketPath'], code: 'invalid_type', message: 'expected a socket path string' },
      ])
    }
    const path = native.controlSocketPath(socketPath ?? undefined, process.env[native.CONTROL_SOCKET_ENV])
    const timeoutMs = positiveTimeout(options.timeoutMs, 'ControlClient')
    const signal = signalOption(options, 'ControlClient')
    const client = new ControlClient(path, timeoutMs)
    client.connection = new Connection(await connectSocket(path, timeoutMs, signal), (c) => client.onClose(c))
    return client
  }

  constructor(path, timeoutMs) {
    this.socketPath = path
    this.timeoutMs = timeoutMs
    this.connection = null
    this.nextId = 1
    this.closed = false
    this.subscriptions = new Set()
  }

  onClose(connection) {
    if (this.connection === connection) this.connection = null
  }

  async reconnect(timeoutMs, signal) {
    const connection = new Connection(await connectSocket(this.socketPath, timeoutMs, signal), (c) => this.onClose(c))
    if (this.closed) {
      // close() ran while this connection was being made: it must not outlive the client.
      connection.fail(new ControlClientError('ERR_CONTROL_CLOSED', 'the client was closed'))
      throw new ControlClientError('ERR_CONTROL_CLOSED', 'the client is closed')
    }
    this.connection = connection
  }

  /**
   * Sends one request and resolves with its data; reconnects if the agent closed an idle connection.
   * `options.signal`: aborted before the request is written, nothing is sent; aborted after, the agent has the
   * request and may carry it out (a mutation may take effect): the call rejects at once with `signal.reason`,
   * the reply is dropped when it comes, and the client stays usable.
   */
  async request(command, payload, options = {}) {
    if (this.closed) throw new ControlClientError('ERR_CONTROL_CLOSED', 'the client is closed', { command })
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : positiveTimeout(options.timeoutMs, command)
    const signal = signalOption(options, command)
    signal?.throwIfAborted()
    const id = String(this.nextId++)
    const line = requestLine(command, payload, id)
    const reused = this.connection !== null && !this.connection.closed
    if (!reused) await this.reconnect(timeoutMs, signal)
    let connection = this.connection
    let data
    try {
      data = await connection.send(line, command, id, timeoutMs, signal)
    } catch (error) {
      // The agent closes a connection that stayed idle; a call made before this client saw that close wrote
      // into a closed socket, and the agent never read it. Sent once more on a fresh connection: safe for every
      // command, since the first copy was not delivered. Any other failure is the caller's to see.
      if (!reused || !unsentRequests.has(error)) throw error
      await this.reconnect(timeoutMs, signal)
      connection = this.connection
      data = await connection.send(line, command, id, timeoutMs, signal)
    }
    if (command === 'Shutdown') {
      // The agent stops after this reply and its end of the connection goes with it; drop ours now, so the
      // next call connects afresh (and says the agent is gone) instead of racing the close on this one.
      connection.fail(new ControlClientError('ERR_CONTROL_CLOSED', 'the agent stopped (Shutdown)'))
    }
    return data
  }

  getHealth(options) {
    return this.request('GetHealth', undefined, options)
  }

  getStatus(options) {
    return this.request('GetStatus', undefined, options)
  }

  getPolicySummary(options) {
    return this.request('GetPolicySummary', undefined, options)
  }

  getPolicySnapshot(options) {
    return this.request('GetPolicySnapshot', undefined, options)
  }

  getDnsStatus(options) {
    return this.request('GetDnsStatus', undefined, options)
  }

  replacePolicySnapshot(snapshot, options) {
    return this.request('ReplacePolicySnapshot', snapshot, options)
  }

  validatePolicySnapshot(snapshot, options) {
    return this.request('ValidatePolicySnapshot', snapshot, options)
  }

  upsertManagedCgroup(payload, options) {
    return this.request('UpsertManagedCgroup', payload, options)
  }

  deleteManagedCgroup(payload, options) {
    return this.request('DeleteManagedCgroup', payload, options)
  }

  async setGlobalMode(mode, options) {
    return this.request('SetGlobalMode', { mode }, options)
  }

  setCgroupMode(payload, options) {
    return this.request('SetCgroupMode', payload, options)
  }

  /** Stops the agent; `detach: true` also detaches the programs and removes the pins (enforcement stops). */
  async shutdown(shutdownOptions = {}, options) {
    const payload = shutdownOptions.detach === undefined ? undefined : { detach: shutdownOptions.detach }
    await this.request('Shutdown', payload, options)
  }

  /**
   * Streams DataplanePacketEvents on a connection of its own. `options.timeoutMs` bounds the subscription
   * only; events then come when they come. Ends when `return()` is called (or `break` in `for await`) or the
   * client is closed; throws ERR_CONTROL_CLOSED when the agent ends the stream. `options.signal` ends it too:
   * the stream's connection is closed at the abort, and the pending (or next) `next()` rejects with
   * `signal.reason` once; the events it had buffered are dropped.
   */
  subscribeEvents(options = {}) {
    if (this.closed) throw new ControlClientError('ERR_CONTROL_CLOSED', 'the client is closed')
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : positiveTimeout(options.timeoutMs, 'SubscribeEvents')
    const signal = signalOption(options, 'SubscribeEvents')
    const subscription = new EventSubscription(this, timeoutMs, signal)
    // An already-aborted signal ends it at once; only a live stream is the client's to end on close().
    if (!subscription.done) this.subscriptions.add(subscription)
    return subscription
  }

  /** Closes every connection; pending requests reject with ERR_CONTROL_CLOSED, event streams end. */
  close() {
    this.closed = true
    if (this.connection !== null) {
      this.connection.fail(new ControlClientError('ERR_CONTROL_CLOSED', 'the client was closed'))
      this.connection = null
    }
    for (const s of this.subscriptions) s.end()
  }
}

// `await using client = await ControlClient.connect()`: leaving the scope is `close()`.
defineAsyncDispose(ControlClient, async function asyncDispose() {
  this.close()
})

class EventSubscription {
  constructor(client, timeoutMs, signal) {
    this.client = client
    this.timeoutMs = timeoutMs
    this.signal = signal
    this.queue = []
    this.waiters = []
    this.error = null
    this.done = false
    this.socket = null
    this.started = null
    this.userEnded = false
    this.onAbort = () => {
      // The abort is the caller's own end of the stream, reported as its reason; buffered events are dropped.
      this.queue = []
      this.finish(signal.reason)
    }
    if (signal?.aborted) this.onAbort()
    else signal?.addEventListener('abort', this.onAbort, { once: true })
  }

  start() {
    if (this.started === null) this.started = this.open()
    return this.started
  }

  async open() {
    const socket = await connectSocket(this.client.socketPath, this.timeoutMs, this.signal)
    if (this.done) {
      socket.destroy()
      return
    }
    this.socket = socket
    const id = String(this.client.nextId++)
    const splitter = new LineSplitter()
    let acked = false
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new ControlClientError('ERR_CONTROL_TIMEOUT', `no reply to SubscribeEvents within ${this.timeoutMs} ms`))
        socket.destroy()
      }, this.timeoutMs)
      const onLine = (line) => {
        if (!acked) {
          acked = true
          clearTimeout(timer)
          const reply = native.controlClientReadReply(line, 'SubscribeEvents', id)
          if (reply.issues != null) {
            reject(new ControlClientError('ERR_CONTROL_BAD_RESPONSE', 'invalid reply to SubscribeEvents', { issues: reply.issues }))
            return
          }
          const response = JSON.parse(reply.json)
          if (response.ok) resolve()
          else {
            reject(
              new ControlClientError('ERR_CONTROL_REFUSED', `${response.error.reason_code}: ${response.error.message}`, {
                controlError: response.error,
                command: 'SubscribeEvents',
                requestId: id,
              }),
            )
          }
          return
        }
        let event
        try {
          event = parseDataplanePacketEventJson(line)
        } catch (error) {
          this.finish(new ControlClientError('ERR_CONTROL_BAD_RESPONSE', `invalid event line: ${error.message}`, { issues: error.issues }))
          return
        }
        this.push(event)
      }
      socket.on('data', (chunk) => {
        if (!splitter.push(chunk, onLine)) {
          this.finish(new ControlClientError('ERR_CONTROL_BAD_RESPONSE', `an event line exceeds ${MAX_LINE_BYTES} bytes`))
        }
      })
      socket.on('error', (error) => {
        clearTimeout(timer)
        const e = new ControlClientError('ERR_CONTROL_CLOSED', `event stream failed: ${error.message}`, { cause: error })
        reject(e)
        this.finish(e)
      })
      socket.on('close', () => {
        clearTimeout(timer)
        const e = new ControlClientError('ERR_CONTROL_CLOSED', 'the agent closed the event stream')
        reject(e)
        this.finish(e)
      })
      socket.write(requestLine('SubscribeEvents', undefined, id))
    })
  }

  push(event) {
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      waiter.resolve({ value: event, done: false })
      return
    }
    this.queue.push(event)
    if (this.queue.length >= EVENT_HIGH_WATER) this.socket?.pause()
  }

  /**
   * Ends the stream: with `error` when the agent or the line was at fault or the signal aborted, cleanly when
   * the user ended it. The error is reported once: to the pending `next()` calls, or else to the next one.
   */
  finish(error) {
    if (this.done) return
    this.done = true
    if (!this.userEnded) this.error = error
    this.signal?.removeEventListener('abort', this.onAbort)
    this.socket?.destroy()
    this.client.subscriptions.delete(this)
    const waiters = this.waiters.splice(0)
    for (const w of waiters) {
      if (this.error !== null) w.reject(this.error)
      else w.resolve({ value: undefined, done: true })
    }
    if (waiters.length > 0) this.error = null
  }

  end() {
    this.userEnded = true
    this.finish(null)
  }

  async next() {
    if (!this.done) {
      try {
        await this.start()
      } catch (error) {
        // Reported below, once, like every end of the stream (an abort already finished it with its reason).
        this.finish(error)
      }
    }
    if (this.queue.length > 0) {
      const value = this.queue.shift()
      if (this.queue.length < EVENT_HIGH_WATER / 2) this.socket?.resume()
      return { value, done: false }
    }
    if (this.done) {
      if (this.error !== null) {
        const e = this.error
        this.error = null
        throw e
      }
      return { value: undefined, done: true }
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  async return() {
    this.end()
    return { value: undefined, done: true }
  }

  [Symbol.asyncIterator]() {
    return this
  }
}

module.exports = { ControlClient, ControlClientError }
