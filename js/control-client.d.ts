import type {
  ControlMode,
  ControlProtocolCommand,
  ControlProtocolError,
  DeleteManagedCgroupPayload,
  HealthData,
  ManagedCgroupData,
  PolicySnapshotData,
  PolicySummaryData,
  DnsStatusData,
  SetCgroupModePayload,
  SetGlobalModeData,
  ShutdownPayload,
  StatusData,
  UpsertManagedCgroupPayload,
} from './control'
import type { ContractIssue } from './errors'
import type { DataplanePacketEvent } from './events'
import type { PolicySnapshotInput } from './policy'
import type {} from './disposable'

export type ControlClientErrorCode =
  | 'ERR_CONTROL_REFUSED'
  | 'ERR_CONTROL_TIMEOUT'
  | 'ERR_CONTROL_CONNECTION'
  | 'ERR_CONTROL_CLOSED'
  | 'ERR_CONTROL_BAD_RESPONSE'

/**
 * A control call that returned no data. `ERR_CONTROL_REFUSED`: the agent answered with a failure, whose
 * `reason_code` and whole `controlError` are here. A payload that fails its schema is refused before it is sent,
 * with a `ControlProtocolRequestError` (a ContractValidationError) instead.
 */
export declare class ControlClientError extends Error {
  constructor(code: ControlClientErrorCode, message: string, extra?: ControlClientErrorExtra)
  readonly name: 'ControlClientError'
  readonly code: ControlClientErrorCode
  /** The response's reason code (ERR_CONTROL_REFUSED only). */
  readonly reason_code?: ControlProtocolError['reason_code']
  readonly controlError?: ControlProtocolError
  readonly command?: ControlProtocolCommand
  readonly requestId?: string
  /** Why a reply was not valid (ERR_CONTROL_BAD_RESPONSE). */
  readonly issues?: ContractIssue[]
}

/** What a ControlClientError carries besides its code and message. */
export interface ControlClientErrorExtra {
  cause?: unknown
  controlError?: ControlProtocolError
  command?: ControlProtocolCommand
  requestId?: string
  issues?: ContractIssue[]
}

export interface ControlCallOptions {
  /** Integer ms, 1..=2147483647; default: the client's `timeoutMs`. */
  timeoutMs?: number
  /**
   * Rejects the call with `signal.reason` when it aborts. Aborted before the request is written, nothing is
   * sent. Aborted after, the request cannot be unsent: the agent may carry it out (a mutation may take effect),
   * its reply is dropped when it comes, and the client stays usable. Read the state back to know the outcome.
   * On `subscribeEvents()`, the abort closes the stream.
   */
  signal?: AbortSignal
}

export interface ControlClientOptions {
  /** Bounds connecting and every request. Integer ms, default 10000. */
  timeoutMs?: number
  /** Aborts connecting: `connect()` rejects with `signal.reason`. Later calls take their own `signal`. */
  signal?: AbortSignal
}

/**
 * The Shutdown payload (`ShutdownPayload`): `detach: true` also detaches the programs and removes every pin
 * (enforcement stops); default false (the pins keep enforcing).
 */
export type ShutdownOptions = ShutdownPayload

/** The agent's events: an async iterator on a connection of its own. */
export interface ControlEventStream extends AsyncIterableIterator<DataplanePacketEvent> {
  next(): Promise<IteratorResult<DataplanePacketEvent, undefined>>
  /** Closes the stream's connection. */
  return(): Promise<IteratorResult<DataplanePacketEvent, undefined>>
}

/**
 * The controller side of the agent's control socket (docs/control-protocol.md). Requests on one connection are
 * pipelined and matched to their replies by id; an idle connection the agent closed is reopened on the next
 * call; a timed-out request closes its connection (a late reply is never taken for another's).
 */
export declare class ControlClient {
  /**
   * Without `socketPath` (or with `undefined`/`null`), the socket `interceptor-ebpf ctl` uses:
   * `BROKER_EBPF_CONTROL_SOCKET` when set and not empty, else `/var/run/broker-interceptor-ebpf/agentd.sock`.
   */
  static connect(socketPath?: string | null, options?: ControlClientOptions): Promise<ControlClient>
  private constructor()
  readonly socketPath: string
  readonly timeoutMs: number
  getHealth(options?: ControlCallOptions): Promise<HealthData>
  getStatus(options?: ControlCallOptions): Promise<StatusData>
  getPolicySummary(options?: ControlCallOptions): Promise<PolicySummaryData>
  /** The active snapshot when the agent applied it; see PolicySnapshotData. */
  getPolicySnapshot(options?: ControlCallOptions): Promise<PolicySnapshotData>
  /** The DNS proxy (SPEC 4b): whether it serves, the addresses its answers taught, its counters. */
  getDnsStatus(options?: ControlCallOptions): Promise<DnsStatusData>
  replacePolicySnapshot(snapshot: PolicySnapshotInput, options?: ControlCallOptions): Promise<PolicySummaryData>
  /** Dry run: the agent validates and compiles the snapshot against the dataplane's limits and applies nothing;
   * the summary is what a replacement would report, with the active (unchanged) generation. */
  validatePolicySnapshot(snapshot: PolicySnapshotInput, options?: ControlCallOptions): Promise<PolicySummaryData>
  upsertManagedCgroup(payload: UpsertManagedCgroupPayload, options?: ControlCallOptions): Promise<ManagedCgroupData>
  deleteManagedCgroup(payload: DeleteManagedCgroupPayload, options?: ControlCallOptions): Promise<ManagedCgroupData>
  setGlobalMode(mode: ControlMode, options?: ControlCallOptions): Promise<SetGlobalModeData>
  setCgroupMode(payload: SetCgroupModePayload, options?: ControlCallOptions): Promise<ManagedCgroupData>
  shutdown(shutdown?: ShutdownOptions, options?: ControlCallOptions): Promise<void>
  subscribeEvents(options?: ControlCallOptions): ControlEventStream
  /** Closes every connection: pending calls reject with ERR_CONTROL_CLOSED, event streams end. */
  close(): void
  /** `await using client = await ControlClient.connect()`: `close()` when the scope ends. */
  [Symbol.asyncDispose](): Promise<void>
}
