import type { ContractIssue, ContractValidationError, Schema } from './errors'
import type { ControlPlaneAuthzErrorCode, DataplaneHook } from './codes'
import type {
  ControlProtocolCommand as CommandLiteral,
  Environment,
  FailMode,
  HealthStatus,
  Mode,
} from './code-lists'
import type { PolicySnapshot, PolicySnapshotInput } from './policy'
import type { DataplaneLayer, DataplaneStatus } from './interceptor'

// ---- ControlPlaneAuthzEvent -------------------------------------------------------------------------------
// The original package's object types were type aliases (z.infer), which TypeScript lets stand in for
// `Record<string, unknown>`; interfaces do not, so these stay type aliases.

/** Why the control plane refused a connection or request. Strict: no `verdict`, no `would_block`, no other key. */
export type ControlPlaneAuthzEvent = {
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  /** Non-empty. */
  message: string
  /** Non-empty when present. */
  command?: string
}

/** The log record: `code_namespace` first, keys in SPEC table order, an empty `command` dropped. */
export type ControlAuthzLogRecord = {
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  message: string
  command?: string
}

export declare const ControlPlaneAuthzEventSchema: Schema<ControlPlaneAuthzEvent>
export declare function parseControlPlaneAuthzEvent(input: unknown): ControlPlaneAuthzEvent
/** Validates the event (an empty `command` is accepted and dropped) and returns its log record. */
export declare function serializeControlPlaneAuthzErrorToLog(event: unknown): ControlAuthzLogRecord

// ---- Control protocol -------------------------------------------------------------------------------------

/** The commands, from the Rust list (js/code-lists.d.ts is generated from it). */
export type ControlProtocolCommand = CommandLiteral

export declare const controlProtocolCommands: readonly ControlProtocolCommand[]

export type ControlMode = Mode
export type ControlFailMode = FailMode

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
/** Absent, `null`, `{}` or `{detach: false}`: the pinned enforcement stays; `detach: true` detaches and removes the pins. */
export interface ShutdownPayload {
  detach?: boolean
}

/**
 * A Shutdown payload as the agent reads it: a plain shutdown has none (`undefined`), a detaching one is
 * `{detach: true}`.
 */
export type ShutdownRequestPayload = { detach: true } | undefined

/**
 * What each command's request carries: its strict payload type, normalised (`undefined` = no payload; absent or
 * null on the wire). Shutdown's payload is optional.
 */
export interface ControlCommandPayloads {
  GetHealth: undefined
  GetStatus: undefined
  GetPolicySummary: undefined
  GetPolicySnapshot: undefined
  ReplacePolicySnapshot: PolicySnapshot
  ValidatePolicySnapshot: PolicySnapshot
  UpsertManagedCgroup: UpsertManagedCgroupPayload
  DeleteManagedCgroup: DeleteManagedCgroupPayload
  SetGlobalMode: SetGlobalModePayload
  SetCgroupMode: SetCgroupModePayload
  Shutdown: ShutdownRequestPayload
  SubscribeEvents: undefined
  GetDnsStatus: undefined
}

/** The payloads a client may write: the snapshot's defaults may be omitted, Shutdown's `detach` too. */
export interface ControlCommandPayloadInputs
  extends Omit<ControlCommandPayloads, 'ReplacePolicySnapshot' | 'ValidatePolicySnapshot' | 'Shutdown'> {
  ReplacePolicySnapshot: PolicySnapshotInput
  ValidatePolicySnapshot: PolicySnapshotInput
  Shutdown: ShutdownPayload | undefined
}

/**
 * The generic request envelope, as the original package typed it (plus `id`): `payload` is any JSON value.
 * Each command's own payload type: `ControlCommandPayloads[C]`, checked by `parseControlCommandPayload`.
 */
export type ControlProtocolRequest = {
  command: ControlProtocolCommand
  payload?: unknown
  /** Echoed in the response. */
  id?: string
}

// No payload (`[P] extends [undefined]`), an optional one (`undefined extends P`: Shutdown), or a required one.
type CommandRequestOf<C extends ControlProtocolCommand, P> = [P] extends [undefined]
  ? { command: C; id?: string; payload?: null }
  : undefined extends P
    ? { command: C; id?: string; payload?: Exclude<P, undefined> | null }
    : { command: C; id?: string; payload: P }

/** A request, discriminated by `command`, with its strict payload: what a client sends. */
export type ControlCommandRequestInput = {
  [C in ControlProtocolCommand]: CommandRequestOf<C, ControlCommandPayloadInputs[C]>
}[ControlProtocolCommand]

/** A request checked the way the agent checks it: commands without payload have none, snapshot defaults filled. */
export type ControlCommandRequest = {
  [C in ControlProtocolCommand]: [ControlCommandPayloads[C]] extends [undefined]
    ? { command: C; id?: string }
    : undefined extends ControlCommandPayloads[C]
      ? { command: C; id?: string; payload?: Exclude<ControlCommandPayloads[C], undefined> }
      : { command: C; id?: string; payload: ControlCommandPayloads[C] }
}[ControlProtocolCommand]

/** A ControlPlaneAuthzEvent whose `command`, when present, is a ControlProtocolCommand. */
export type ControlProtocolError = {
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  /** Non-empty. */
  message: string
  command?: ControlProtocolCommand
}

/** The fields after `degradedReasons` are optional (older agents did not send them); this agent sends all that apply. */
export interface HealthData {
  /** `degraded` exactly when `degradedReasons` is non-empty. */
  status: HealthStatus
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
  /** How long the kernel goes without a heartbeat before managed traffic gets the degraded verdicts. */
  heartbeatGraceMs?: number
  /** The bypass layers in force (docs/threat-model.md); no duplicates. */
  activeLayers?: DataplaneLayer[]
  /** The agent's version, e.g. `0.1.0`: 1-64 printable ASCII characters, no spaces. */
  version?: string
}

export interface ManagedCgroupData {
  /** Decimal digits (u64). */
  cgroupId: string
  path?: string
  mode?: ControlMode
  workloadId?: string
}

/** What only the Node loader's `status()` reports: the agent's GetStatus data has the rest, and no other key. */
type LoaderOnlyStatusKey = 'cgroupRoot' | 'pinDir' | 'adopted' | 'heartbeatGraceMs' | 'eventsDelivered'

/**
 * GetStatus: the loader's `DataplaneStatus` (one shape, written in `src/interceptor.rs`) without the loader's
 * own keys. Counters are integers 0..=Number.MAX_SAFE_INTEGER; no hook or layer twice; `activeLayers` exactly
 * the layers of `layers` whose state is `active`, in that order.
 */
export interface StatusData
  extends Omit<DataplaneStatus, LoaderOnlyStatusKey | 'attachedHooks' | 'managedCgroups' | 'learnedAddresses'> {
  /** No duplicates. */
  attachedHooks: DataplaneHook[]
  managedCgroups: ManagedCgroupData[]
  /** Addresses the DNS proxy learned that have not expired; absent from agents that predate it. */
  learnedAddresses?: number
}

/** Generation 0 means no policy has been loaded; every count is then 0. */
export interface PolicySummaryData {
  generation: number
  ipv4Rules: number
  ipv6Rules: number
  brokerEndpoints: number
  dnsEndpoints: number
  /** Rules by name (SPEC 4b); 0 when the agent predates them. */
  fqdnRules: number
  /** Broker entries by name; 0 when the agent predates them. */
  brokerNames: number
}

/** One address an answer taught the DNS proxy, for one workload (SPEC 4b). */
export interface DnsLearnedAddressData {
  /** Canonical name (lower case, no trailing dot). */
  name: string
  /** Canonical IPv4 or IPv6 text. */
  address: string
  ttlRemainingMs: number
  /** Ids of the fqdn rules that name `name`. */
  ruleIds: string[]
  /** A broker entry names `name`. */
  broker: boolean
  /** u64 as decimal text. */
  cgroupId: string
  workloadId?: string
}

export interface DnsCountersData {
  queries: number
  refused: number
  wouldRefuse: number
  learnedAddresses: number
  upstreamFailures: number
}

/** GetDnsStatus: the agent's DNS proxy. `reason` only while it is not serving. */
export interface DnsStatusData {
  serving: boolean
  listen: string[]
  reason?: string
  dnsQueries: 'any' | 'policy'
  learned: DnsLearnedAddressData[]
  counters: DnsCountersData
}

/**
 * GetPolicySnapshot: the active generation and, when the agent applied it itself, the snapshot (canonical form:
 * every default written out). No `snapshot` with generation 0 (no policy) or when the agent adopted the pinned
 * state of a previous agent (the kernel keeps only the compiled policy).
 */
export interface PolicySnapshotData {
  generation: number
  snapshot?: PolicySnapshot
}

export interface SetGlobalModeData {
  globalMode: ControlMode
}

/** What each command's success response carries: its strict data type (`undefined` = no data). */
export interface ControlCommandDatas {
  GetHealth: HealthData
  GetStatus: StatusData
  GetPolicySummary: PolicySummaryData
  GetPolicySnapshot: PolicySnapshotData
  ReplacePolicySnapshot: PolicySummaryData
  /** What ReplacePolicySnapshot would report; `generation` is the active one: nothing was applied. */
  ValidatePolicySnapshot: PolicySummaryData
  UpsertManagedCgroup: ManagedCgroupData
  DeleteManagedCgroup: ManagedCgroupData
  SetGlobalMode: SetGlobalModeData
  SetCgroupMode: ManagedCgroupData
  Shutdown: undefined
  SubscribeEvents: undefined
  GetDnsStatus: DnsStatusData
}

/** The generic success envelope, as the original package typed it (plus `id`): `data` is any JSON value. */
export type ControlProtocolSuccessResponse = {
  ok: true
  command: ControlProtocolCommand
  data?: unknown
  id?: string
}

export type ControlProtocolFailureResponse = {
  ok: false
  error: ControlProtocolError
  id?: string
}

export type ControlProtocolResponse = ControlProtocolSuccessResponse | ControlProtocolFailureResponse

/** A success response with its command's strict data, discriminated by `command`. */
export type ControlCommandSuccessResponse = {
  [C in ControlProtocolCommand]: [ControlCommandDatas[C]] extends [undefined]
    ? { ok: true; command: C; id?: string }
    : { ok: true; command: C; data: ControlCommandDatas[C]; id?: string }
}[ControlProtocolCommand]

/** A response checked the way a control client checks it: each command's data strictly. */
export type ControlCommandResponse = ControlCommandSuccessResponse | ControlProtocolFailureResponse

/** Thrown by the request parsers; `controlError` is the failure the agent sends back for this request. */
export declare class ControlProtocolRequestError extends ContractValidationError {
  readonly controlError: ControlProtocolError & {
    reason_code: 'CTRL_REQUEST_MALFORMED' | 'CTRL_REQUEST_PAYLOAD_INVALID'
  }
  /** The request's `id`, when it could be read. */
  readonly requestId?: string
  readonly issues: ContractIssue[]
}

// The generic envelope, as the original package checked it.
export declare const ControlProtocolCommandSchema: Schema<ControlProtocolCommand>
export declare const ControlProtocolRequestSchema: Schema<ControlProtocolRequest>
export declare const ControlProtocolErrorSchema: Schema<ControlProtocolError>
export declare const ControlProtocolSuccessResponseSchema: Schema<ControlProtocolSuccessResponse>
export declare const ControlProtocolFailureResponseSchema: Schema<ControlProtocolFailureResponse>
export declare const ControlProtocolResponseSchema: Schema<ControlProtocolResponse>

/** The envelope only (any payload); throws ControlProtocolRequestError with CTRL_REQUEST_MALFORMED. */
export declare function parseControlProtocolRequest(input: unknown): ControlProtocolRequest
/** One request line (at most 16 MiB, without or with its `\n`); duplicate keys and inner newlines are malformed. */
export declare function parseControlProtocolRequestLine(line: Uint8Array | string): ControlProtocolRequest
/** The envelope only (any data). */
export declare function parseControlProtocolResponse(input: unknown): ControlProtocolResponse
export declare function parseControlProtocolResponseLine(line: Uint8Array | string): ControlProtocolResponse

// Each command's strict payload and data (docs/control-protocol.md, "Commands").

/** The command's payload, normalised (snapshot defaults filled); `undefined` for commands without one. */
export declare function parseControlCommandPayload<C extends ControlProtocolCommand>(
  command: C,
  payload: unknown,
): ControlCommandPayloads[C]
/** The command's success data; `undefined` for commands without any. */
export declare function parseControlCommandData<C extends ControlProtocolCommand>(command: C, data: unknown): ControlCommandDatas[C]
/** One schema per command for its payload: `ControlCommandPayloadSchemas.SetGlobalMode.parse({mode: 'observe'})`. */
export declare const ControlCommandPayloadSchemas: { readonly [C in ControlProtocolCommand]: Schema<ControlCommandPayloads[C]> }
/** One schema per command for its success data. */
export declare const ControlCommandDataSchemas: { readonly [C in ControlProtocolCommand]: Schema<ControlCommandDatas[C]> }

/** A whole request as the agent checks it; throws ControlProtocolRequestError (MALFORMED or PAYLOAD_INVALID). */
export declare function parseControlCommandRequest(input: unknown): ControlCommandRequest
export declare function parseControlCommandRequestLine(line: Uint8Array | string): ControlCommandRequest
/** A whole response with its command's data checked strictly. */
export declare function parseControlCommandResponse(input: unknown): ControlCommandResponse
export declare function parseControlCommandResponseLine(line: Uint8Array | string): ControlCommandResponse
export declare const ControlCommandRequestSchema: Schema<ControlCommandRequest>
export declare const ControlCommandResponseSchema: Schema<ControlCommandResponse>

// ---- Config -----------------------------------------------------------------------------------------------

/** Strict; every field defaulted, so `{}` and `undefined` parse to the all-defaults config. */
export type EbpfInterceptorConfig = {
  /** Default `development`. */
  environment: Environment
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
/** `input` is `unknown`, as in the original: a partial config (EbpfInterceptorConfigInput) or `undefined` for all defaults. */
export declare function parseEbpfInterceptorConfig(input?: unknown): EbpfInterceptorConfig
/** True in production; otherwise `rejectUnknownReasonCodes`. The input is validated like a config. */
export declare function shouldFailClosedOnUnknownReasonCode(config?: EbpfInterceptorConfigInput): boolean

// ---- Peer and socket checks -------------------------------------------------------------------------------
// The original package's shapes (SPEC 3) first; the other accepted inputs are additions beside them.

/** SO_PEERCRED of a control-socket client. `hasPeerCred: false` means the credentials could not be read. */
export interface ControllerPeer {
  hasPeerCred: boolean
  /** u32; read only when `hasPeerCred` is true. */
  uid: number
  /** u32; read only when `hasPeerCred` is true. */
  gid: number
}

/** Addition: credentials as read (`{uid, gid, pid?}`); `null`/`undefined` means they could not be read. */
export interface PeerCredentials {
  uid: number
  gid: number
  pid?: number
}

/**
 * Who may send mutating commands: uid in `allowedUids` OR gid in `allowedGids`; both empty = every peer
 * (permissive mode for local setups). A config (or part of one) is accepted too: its
 * `privilegedControllerUids`/`privilegedControllerGids`, an absent list being empty.
 */
export interface ControllerAuthorizationPolicy {
  allowedUids: readonly number[]
  allowedGids: readonly number[]
}

/** What stat() says about the socket. `mode` may be a full st_mode: only `mode & 0o777` is compared. */
export interface SocketSecurityMetadata {
  mode: number
  ownerUid: number
  ownerGid: number
}

/** Addition: the socket's `{mode, uid, gid}` as an fs.Stats carries them (an fs.Stats is accepted as-is). */
export interface SocketStat {
  mode: number
  uid: number
  gid: number
}

/** The mode the socket's permission bits must equal (compared as given) and its owner. */
export interface SocketSecurityExpectations {
  expectedMode: number
  expectedOwnerUid: number
  expectedOwnerGid: number
}

/** Addition: expectations as `{mode (0..=0o777), uid, gid}`. A config gives controlSocketFileMode/OwnerUid/OwnerGid. */
export interface SocketModeAndOwner {
  mode: number
  uid: number
  gid: number
}

/** A refusal: flat, as in the original package. */
export type ControlAuthzFailure = {
  ok: false
  code_namespace: 'control_authz'
  reason_code: ControlPlaneAuthzErrorCode
  message: string
}

export type ControlAuthzResult = { ok: true } | ControlAuthzFailure

/**
 * `hasPeerCred: false` (or `null`) -> CTRL_AUTH_PEERCRED_UNAVAILABLE (`SO_PEERCRED metadata is required`);
 * both lists empty -> allowed; uid in allowedUids OR gid in allowedGids -> allowed; otherwise
 * CTRL_AUTH_PEERCRED_REJECTED_UID (`peer uid 2000 is not authorized`) when allowedUids is non-empty, else
 * CTRL_AUTH_PEERCRED_REJECTED_GID (`peer gid 2000 is not authorized`).
 */
export declare function authorizeControllerPeer(
  peer: ControllerPeer | PeerCredentials | null | undefined,
  policy: ControllerAuthorizationPolicy | EbpfInterceptorConfigInput,
): ControlAuthzResult

/**
 * Mode first (`socket mode 666 != expected 660`, octal), then owner (`socket owner 1000:1000 != expected 0:0`).
 */
export declare function validateSocketSecurityMetadata(
  meta: SocketSecurityMetadata | SocketStat | import('node:fs').Stats,
  expected: SocketSecurityExpectations | SocketModeAndOwner | EbpfInterceptorConfigInput,
): ControlAuthzResult
