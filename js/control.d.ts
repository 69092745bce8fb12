import type { ContractIssue, ContractValidationError, Schema } from './errors'
import type { ControlPlaneAuthzErrorCode, DataplaneHook } from './codes'
import type { PolicySnapshot, PolicySnapshotInput } from './policy'

// ---- ControlPlaneAuthzEvent -------------------------------------------------------------------------------

/** Why the control plane refused a connection or request. Strict: no `verdict`, no `would_block`, no other key. */
export interface ControlPlaneAuthzEvent {
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  /** Non-empty. */
  message: string
  /** Non-empty when present. */
  command?: string
}

/** The log record: `code_namespace` first, keys in SPEC table order, an empty `command` dropped. */
export interface ControlAuthzLogRecord {
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  message: string
  command?: string
}

export declare const ControlPlaneAuthzEventSchema: Schema<ControlPlaneAuthzEvent>
export declare function parseControlPlaneAuthzEvent(input: unknown): ControlPlaneAuthzEvent
/** Validates the event (an empty `command` is accepted and dropped) and returns its log record. */
export declare function serializeControlPlaneAuthzErrorToLog(event: ControlPlaneAuthzEvent): ControlAuthzLogRecord

// ---- Control protocol -------------------------------------------------------------------------------------

export type ControlProtocolCommand =
  | 'GetHealth'
  | 'GetStatus'
  | 'GetPolicySummary'
  | 'ReplacePolicySnapshot'
  | 'UpsertManagedCgroup'
  | 'DeleteManagedCgroup'
  | 'SetGlobalMode'
  | 'SetCgroupMode'
  | 'Shutdown'
  | 'SubscribeEvents'

export declare const controlProtocolCommands: readonly ControlProtocolCommand[]

export type ControlMode = 'enforce' | 'observe'
export type ControlFailMode = 'closed' | 'open'

/**
 * A cgroup by path (absolute from the cgroup2 mount as /proc/<pid>/cgroup prints it, normalised, not `/`) or by
 * id (decimal digits of a non-zero u64, no leading zeros). Exactly one of the two.
 */
export type CgroupSelector = { path: string; id?: never } | { id: string; path?: never }

export type UpsertManagedCgroupPayload = CgroupSelector & {
  /** Absent: the cgroup follows the global mode. */
  mode?: ControlMode
  /** 1..=63 bytes, no control characters. */
  workloadId?: string
}
export type DeleteManagedCgroupPayload = CgroupSelector
export interface SetGlobalModePayload {
  mode: ControlMode
}
export type SetCgroupModePayload = CgroupSelector & { mode: ControlMode }
/** Absent, `null` or `{}`: the pinned enforcement stays; `detach: true` detaches and removes the pins. */
export interface ShutdownPayload {
  detach?: boolean
}

interface RequestBase<C extends ControlProtocolCommand> {
  command: C
  /** Echoed in the response. */
  id?: string
}
type NoPayload<C extends ControlProtocolCommand> = RequestBase<C> & { payload?: null }
type WithPayload<C extends ControlProtocolCommand, P> = RequestBase<C> & { payload: P }

/** A request, discriminated by `command`. What a client sends (snapshot defaults may be omitted). */
export type ControlProtocolRequestInput =
  | NoPayload<'GetHealth'>
  | NoPayload<'GetStatus'>
  | NoPayload<'GetPolicySummary'>
  | WithPayload<'ReplacePolicySnapshot', PolicySnapshotInput>
  | WithPayload<'UpsertManagedCgroup', UpsertManagedCgroupPayload>
  | WithPayload<'DeleteManagedCgroup', DeleteManagedCgroupPayload>
  | WithPayload<'SetGlobalMode', SetGlobalModePayload>
  | WithPayload<'SetCgroupMode', SetCgroupModePayload>
  | (RequestBase<'Shutdown'> & { payload?: ShutdownPayload | null })
  | NoPayload<'SubscribeEvents'>

/** A validated request: commands without payload have none, the snapshot has its defaults filled. */
export type ControlProtocolRequest =
  | RequestBase<'GetHealth'>
  | RequestBase<'GetStatus'>
  | RequestBase<'GetPolicySummary'>
  | WithPayload<'ReplacePolicySnapshot', PolicySnapshot>
  | WithPayload<'UpsertManagedCgroup', UpsertManagedCgroupPayload>
  | WithPayload<'DeleteManagedCgroup', DeleteManagedCgroupPayload>
  | WithPayload<'SetGlobalMode', SetGlobalModePayload>
  | WithPayload<'SetCgroupMode', SetCgroupModePayload>
  | (RequestBase<'Shutdown'> & { payload?: { detach: true } })
  | RequestBase<'SubscribeEvents'>

/** A ControlPlaneAuthzEvent whose `command`, when present, is a ControlProtocolCommand. */
export interface ControlProtocolError extends ControlPlaneAuthzEvent {
  command?: ControlProtocolCommand
}

export interface HealthData {
  /** `degraded` exactly when `degradedReasons` is non-empty. */
  status: 'ok' | 'degraded'
  degradedReasons: string[]
  /** RFC 3339: since when the current degraded condition holds; only while degraded. */
  degradedSince?: string
  /** RFC 3339: when the agent started. */
  startedAt?: string
  /** The agent adopted a pinned state (policy, managed cgroups, links) instead of starting empty. */
  adopted?: boolean
  /** Only with `adopted: true`: the pinned heartbeat's age at adoption (beyond the grace: degraded verdicts). */
  adoptedHeartbeatAgeMs?: number
  /** Age of the last heartbeat the agent wrote. */
  heartbeatAgeMs?: number
  heartbeatGraceMs?: number
}

export interface ManagedCgroupData {
  /** Decimal digits (u64). */
  cgroupId: string
  path?: string
  mode?: ControlMode
  workloadId?: string
}

/** Counters are integers 0..=Number.MAX_SAFE_INTEGER. */
export interface StatusData {
  /** No duplicates. */
  attachedHooks: DataplaneHook[]
  managedCgroups: ManagedCgroupData[]
  globalMode: ControlMode
  failMode: ControlFailMode
  generation: number
  ipv4Rules: number
  ipv6Rules: number
  eventsEmitted: number
  droppedInKernel: number
  droppedInQueue: number
  degraded: boolean
}

/** Generation 0 means no policy has been loaded; every count is then 0. */
export interface PolicySummaryData {
  generation: number
  ipv4Rules: number
  ipv6Rules: number
  brokerEndpoints: number
  dnsEndpoints: number
}

export interface SetGlobalModeData {
  globalMode: ControlMode
}

interface SuccessBase<C extends ControlProtocolCommand> {
  ok: true
  command: C
  id?: string
}
type SuccessWith<C extends ControlProtocolCommand, D> = SuccessBase<C> & { data: D }

export type ControlProtocolSuccessResponse =
  | SuccessWith<'GetHealth', HealthData>
  | SuccessWith<'GetStatus', StatusData>
  | SuccessWith<'GetPolicySummary', PolicySummaryData>
  | SuccessWith<'ReplacePolicySnapshot', PolicySummaryData>
  | SuccessWith<'UpsertManagedCgroup', ManagedCgroupData>
  | SuccessWith<'DeleteManagedCgroup', ManagedCgroupData>
  | SuccessWith<'SetGlobalMode', SetGlobalModeData>
  | SuccessWith<'SetCgroupMode', ManagedCgroupData>
  | SuccessBase<'Shutdown'>
  | SuccessBase<'SubscribeEvents'>

export interface ControlProtocolFailureResponse {
  ok: false
  error: ControlProtocolError
  id?: string
}

export type ControlProtocolResponse = ControlProtocolSuccessResponse | ControlProtocolFailureResponse

/** Thrown by the request parsers; `controlError` is the failure the agent sends back for this request. */
export declare class ControlProtocolRequestError extends ContractValidationError {
  readonly controlError: ControlProtocolError & {
    reason_code: 'CTRL_REQUEST_MALFORMED' | 'CTRL_REQUEST_PAYLOAD_INVALID'
  }
  /** The request's `id`, when it could be read. */
  readonly requestId?: string
  readonly issues: ContractIssue[]
}

export declare const ControlProtocolCommandSchema: Schema<ControlProtocolCommand>
export declare const ControlProtocolRequestSchema: Schema<ControlProtocolRequest>
export declare const ControlProtocolErrorSchema: Schema<ControlProtocolError>
export declare const ControlProtocolSuccessResponseSchema: Schema<ControlProtocolSuccessResponse>
export declare const ControlProtocolFailureResponseSchema: Schema<ControlProtocolFailureResponse>
export declare const ControlProtocolResponseSchema: Schema<ControlProtocolResponse>

/** Throws ControlProtocolRequestError (CTRL_REQUEST_MALFORMED or CTRL_REQUEST_PAYLOAD_INVALID). */
export declare function parseControlProtocolRequest(input: unknown): ControlProtocolRequest
/** One request line (at most 16 MiB, without or with its `\n`); duplicate keys and inner newlines are malformed. */
export declare function parseControlProtocolRequestLine(line: Uint8Array | string): ControlProtocolRequest
export declare function parseControlProtocolResponse(input: unknown): ControlProtocolResponse
export declare function parseControlProtocolResponseLine(line: Uint8Array | string): ControlProtocolResponse

// ---- Config -----------------------------------------------------------------------------------------------

/** Strict; every field defaulted, so `{}` and `undefined` parse to the all-defaults config. */
export interface EbpfInterceptorConfig {
  /** Default `development`. */
  environment: 'development' | 'test' | 'production'
  /** Default true. */
  rejectUnknownReasonCodes: boolean
  /** Absolute, at most 107 bytes. Default `/var/run/broker-interceptor-ebpf/agentd.sock`. */
  controlSocketPath: string
  /** 0..=0o777, default 0o750. */
  controlSocketDirMode: number
  /** 0..=0o777, default 0o660. */
  controlSocketFileMode: number
  /** u32, default 0. */
  controlSocketOwnerUid: number
  /** u32, default 0. */
  controlSocketOwnerGid: number
  /** u32 each, default []. */
  privilegedControllerUids: number[]
  /** u32 each, default []. */
  privilegedControllerGids: number[]
}

export type EbpfInterceptorConfigInput = Partial<EbpfInterceptorConfig>

export declare const EbpfInterceptorConfigSchema: Schema<EbpfInterceptorConfig>
export declare function parseEbpfInterceptorConfig(input?: EbpfInterceptorConfigInput): EbpfInterceptorConfig
/** True in production; otherwise `rejectUnknownReasonCodes`. The input is validated like a config. */
export declare function shouldFailClosedOnUnknownReasonCode(config?: EbpfInterceptorConfigInput): boolean

// ---- Peer and socket checks -------------------------------------------------------------------------------

/** SO_PEERCRED of a control-socket client; `null`/`undefined` means the credentials could not be read. */
export interface ControllerPeer {
  uid: number
  gid: number
  pid?: number
}

/**
 * Who may send mutating commands: uid in the uid list OR gid in the gid list; both empty = every peer.
 * Any EbpfInterceptorConfig (or part of one) is accepted too; an absent list is empty.
 */
export interface ControllerAuthorizationPolicy {
  privilegedControllerUids: number[]
  privilegedControllerGids: number[]
}

/** What stat() says about the socket. `mode` may be a full st_mode; an fs.Stats object is accepted as-is. */
export interface SocketSecurityMetadata {
  mode: number
  uid: number
  gid: number
}

/** Expected permission bits (0..=0o777) and owner; a config gives controlSocketFileMode/OwnerUid/OwnerGid. */
export interface SocketSecurityExpectations {
  mode: number
  uid: number
  gid: number
}

export interface ControlAuthzFailure {
  ok: false
  error: ControlPlaneAuthzEvent
}

export type ControlAuthzResult = { ok: true } | ControlAuthzFailure

export declare function authorizeControllerPeer(
  peer: ControllerPeer | null | undefined,
  policy: ControllerAuthorizationPolicy | EbpfInterceptorConfigInput,
): ControlAuthzResult

/** Mode (`& 0o777`) first, then owner uid and gid. */
export declare function validateSocketSecurityMetadata(
  meta: SocketSecurityMetadata | import('node:fs').Stats,
  expected: SocketSecurityExpectations | EbpfInterceptorConfigInput,
): ControlAuthzResult
