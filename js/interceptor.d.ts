import type { DataplaneVerdictReasonCode, DataplaneHook, DataplaneProtocol } from './codes'
import type {
  DataplaneDenyCode,
  DataplaneObserveWouldAllowCode,
  DataplaneObserveWouldBlockCode,
  FailMode,
  Layer,
  LayerState,
  Mode,
  SockAddrHook,
} from './code-lists'
// The generated types of the addon (`src/interceptor.rs`): the status shape is written once, there, with its
// comments; the types below narrow its strings to their literal unions. __test__/binding-parity.test-d.ts
// fails the type check when the two drift apart.
import type { JsDataplaneStatus, JsLayerCounters, JsManagedCgroup, JsPolicySummary, JsVerdictCount } from '../binding'
import type { PolicySnapshotInput } from './policy'
import type {} from './disposable'

/** `enforce` denies what the policy does not allow; `observe` allows everything and reports what it would do. */
export type DataplaneMode = Mode
/** What an enforced, managed cgroup gets while the agent's heartbeat is stale or no policy was ever loaded. */
export type DataplaneFailMode = FailMode

/** Options of `Interceptor.load()`. Every key is optional; unknown keys are rejected. */
export interface InterceptorOptions {
  /** cgroup v2 directory the programs attach to (absolute). Default: the cgroup2 mount found at run time. */
  cgroupRoot?: string
  /** bpffs directory for pinned links and maps (absolute). Default: `<bpffs>/broker-interceptor-ebpf`. */
  pinDir?: string
  /** Default `closed`. */
  failMode?: DataplaneFailMode
  /** How old the heartbeat may get before enforced cgroups are degraded. Integer ms, default 5000. */
  heartbeatGraceMs?: number
  /**
   * The loader's own heartbeat period: integer ms, shorter than `heartbeatGraceMs`. Default 1000, or a third of
   * `heartbeatGraceMs` when only that is given.
   */
  heartbeatIntervalMs?: number
  /** Kernel ring buffer size: a power of two and a multiple of the page size. Default 4 MiB. */
  ringBufferBytes?: number
  /** Default `enforce`. */
  globalMode?: DataplaneMode
  /** Events each iterator's user-space queue holds before counting drops in `droppedInQueue`. Default 65,536. */
  eventQueueCapacity?: number
  /**
   * Bypass layers not to attach (docs/threat-model.md); `status().layers` reports them as `disabled`, and an
   * adopted state drops their pinned links. Default: every layer the kernel offers is attached.
   */
  disableLayers?: DataplaneLayer[]
  /**
   * Not a dataplane option: aborts the call. Aborted before the load starts, nothing is loaded. A load under
   * way cannot be stopped: `load()` rejects with `signal.reason` at once, and the dataplane it brings up is
   * closed without detaching (as `close()` leaves it: pinned, adoptable by the next loader).
   */
  signal?: AbortSignal
}

/** Options of the calls whose only option is the AbortSignal. */
export interface InterceptorCallOptions {
  /**
   * Rejects the call with `signal.reason` when it aborts. For `replacePolicySnapshot`: aborted before the
   * call, the policy stays as it was; once the replacement runs it completes or fails whole (it is atomic) and
   * the call does not wait for it: `status().generation` says whether it took effect.
   */
  signal?: AbortSignal
}

/** A bypass layer (docs/threat-model.md). */
export type DataplaneLayer = Layer
/** `active`: attached; `disabled`: by `disableLayers` (`BROKER_EBPF_DISABLE_LAYERS`); `unavailable`: the kernel lacks it. */
export type DataplaneLayerState = LayerState

/** One bypass layer in `status().layers` (and the agent's GetStatus data): `reason` exactly when `unavailable`. */
export type DataplaneLayerStatus =
  | { layer: DataplaneLayer; state: 'active' | 'disabled'; reason?: never }
  | {
      layer: DataplaneLayer
      state: 'unavailable'
      /** What the kernel lacks. */
      reason: string
    }

/** What the bypass layers refused since their counters were created (they are pinned). */
export interface DataplaneLayerCounters extends JsLayerCounters {}

/** One entry of `status().verdicts`: how many verdicts one hook made with one reason code (at least 1). */
export interface DataplaneVerdictCount extends Omit<JsVerdictCount, 'hook' | 'reasonCode'> {
  hook: DataplaneHook
  reasonCode: DataplaneVerdictReasonCode
}

/**
 * A cgroup, by path (absolute, or relative to `cgroupRoot`; normalised: no empty, `.` or `..` segments) or by id
 * (decimal text as in events without leading zeros, or a safe integer; never 0).
 */
export type CgroupTarget = { path: string; id?: never } | { id: string | number; path?: never }

export type ManagedCgroupUpsert = CgroupTarget & {
  mode?: DataplaneMode
  /** 1..=63 bytes, no control characters; reported as `workload_id` in events. */
  workloadId?: string
  /**
   * The root cgroup of the cgroup2 hierarchy holds every process of the host: it is refused
   * (`ERR_DATAPLANE_CGROUP_ROOT_REFUSED`) unless this is `true`.
   */
  allowRoot?: boolean
}
export type CgroupModeChange = CgroupTarget & { mode: DataplaneMode }

export interface ManagedCgroup extends Omit<JsManagedCgroup, 'mode'> {
  /** Absent: the global mode applies. */
  mode?: DataplaneMode
}

export interface PolicySummary extends JsPolicySummary {}

/** `status()`: the addon's `JsDataplaneStatus` (every counter and its meaning) with exact string types. */
export interface DataplaneStatus
  extends Omit<
    JsDataplaneStatus,
    | 'attachedHooks'
    | 'managedCgroups'
    | 'globalMode'
    | 'failMode'
    | 'layers'
    | 'activeLayers'
    | 'layerCounters'
    | 'verdicts'
  > {
  /** The four sock_addr hooks; the bypass layers are listed in `layers`. */
  attachedHooks: SockAddrHook[]
  managedCgroups: ManagedCgroup[]
  globalMode: DataplaneMode
  failMode: DataplaneFailMode
  /** Every bypass layer, in a fixed order, with its state. */
  layers: DataplaneLayerStatus[]
  /** The layers in force (`state: 'active'`). */
  activeLayers: DataplaneLayer[]
  /** What the bypass layers refused since their counters were created (they are pinned). */
  layerCounters: DataplaneLayerCounters
  /**
   * Every verdict the kernel programs made since their counters were created (they are pinned), by hook and
   * reason code; only the pairs that counted. Exact whatever the events' sampling and drops.
   */
  verdicts: DataplaneVerdictCount[]
}

type ObserveCode = DataplaneObserveWouldAllowCode | DataplaneObserveWouldBlockCode
type DenyCode = DataplaneDenyCode

interface InterceptorEventFields {
  code_namespace: 'dataplane_verdict'
  hook: DataplaneHook
  /** u64 as decimal text. */
  cgroup_id: string
  /** `icmp`: an ICMP or ICMPv6 ping socket; `raw`, `packet`, `xdp`: a socket refused at creation (or a raw packet). */
  protocol: DataplaneProtocol
  /**
   * Canonical IPv4 or IPv6 text (an IPv4-mapped IPv6 destination stays `::ffff:a.b.c.d`). Absent, with
   * `dst_port`, for a socket refused at creation (hooks `sock_create`, `socket_create_lsm`): it has none.
   */
  dst_ip?: string
  dst_port?: number
  pid: number
  uid: number
  comm: string
  rule_id?: string
  /** SPEC 4b: the DNS name whose answer taught the destination (an address an fqdn rule's name resolved to). */
  dns_name?: string
  policy_generation: number
  workload_id?: string
  /** RFC 3339, UTC, 9 fractional digits. */
  observed_at: string
}

/**
 * A DataplanePacketEvent (SPEC 3) as `events()` yields it: the dataplane always fills the enrichment keys,
 * keys appear in SPEC order, and `would_block` exists exactly for the observe codes.
 */
export type InterceptorPacketEvent =
  | (InterceptorEventFields & { reason_code: DataplaneObserveWouldAllowCode; verdict: 'allow'; would_block: false })
  | (InterceptorEventFields & { reason_code: DataplaneObserveWouldBlockCode; verdict: 'allow'; would_block: true })
  | (InterceptorEventFields & { reason_code: DenyCode; verdict: 'deny'; would_block?: never })
  | (InterceptorEventFields & {
      reason_code: Exclude<DataplaneVerdictReasonCode, ObserveCode | DenyCode>
      verdict: 'allow'
      would_block?: never
    })

export interface InterceptorEventsOptions {
  /** Most events fetched per native call, 1..65536, default 4096. */
  batchSize?: number
  /**
   * Ends the iterator: a pending `next()` rejects with `signal.reason` at the abort, or else the next call does,
   * once; the subscription then closes (the events it held are dropped, counted in `droppedInQueue`).
   */
  signal?: AbortSignal
}

/**
 * Which build of the package serves this process: `'native'`, the Linux addon of a platform package (the
 * dataplane works where the kernel allows), or `'wasm32-wasi'`, the WebAssembly fallback that every other
 * platform gets (the contract API only; `Interceptor.load` rejects with `ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM`).
 */
export declare const bindingTarget: 'native' | 'wasm32-wasi'

/**
 * The eBPF dataplane loader. Linux, root or `CAP_BPF` + `CAP_PERFMON` + `CAP_NET_ADMIN` (docs/node-api.md; plus
 * `CAP_SYS_ADMIN` only to mount a bpffs where none is mounted).
 */
export declare class Interceptor {
  private constructor()
  /**
   * Loads the four sock_addr programs and the bypass layers the kernel offers and attaches them to `cgroupRoot`,
   * or adopts the state pinned in `pinDir`.
   * Rejects with ContractValidationError for bad options, or a DataplaneError whose `code` starts with
   * `ERR_DATAPLANE_` (a verifier rejection carries `verifierLog`). In the WebAssembly build (`bindingTarget` is
   * `'wasm32-wasi'`) it rejects with a DataplaneError `ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM`, naming why no
   * native addon serves this process and what the dataplane needs. Every method's dataplane failure is a
   * DataplaneError; a closed interceptor's is `ERR_DATAPLANE_CLOSED`.
   */
  static load(options?: InterceptorOptions): Promise<Interceptor>
  /**
   * Validates the whole snapshot (every issue listed in a ContractValidationError) and applies it atomically;
   * a rejected snapshot leaves the active policy untouched. Strings and bytes are read as JSON text (checked at
   * run time only).
   */
  replacePolicySnapshot(snapshot: PolicySnapshotInput | string | Uint8Array, options?: InterceptorCallOptions): Promise<PolicySummary>
  upsertManagedCgroup(target: ManagedCgroupUpsert): ManagedCgroup
  /** `false` when the cgroup was not managed. */
  deleteManagedCgroup(target: CgroupTarget): boolean
  setGlobalMode(mode: DataplaneMode): void
  setCgroupMode(target: CgroupModeChange): void
  setFailMode(mode: DataplaneFailMode): void
  heartbeat(): void
  /** Stops the loader's own heartbeat timer (to provoke the degraded state in tests); `heartbeat()` still works. */
  pauseHeartbeatTimer(): void
  status(): DataplaneStatus
  readonly closed: boolean
  /**
   * Every verdict event; ends when `close()` is called. Each iterator is its own subscription with its own
   * bounded queue (`eventQueueCapacity`) and sees every event from its first `next()` on: a slow iterator loses
   * events (counted in `status().droppedInQueue`) without slowing the others.
   */
  events(options?: InterceptorEventsOptions): AsyncGenerator<InterceptorPacketEvent, void, undefined>
  /** The same events as arrays, one per native batch (less per-event overhead). */
  eventBatches(options?: InterceptorEventsOptions): AsyncIterableIterator<InterceptorPacketEvent[]>
  /**
   * Ends every iterator and stops the loader's threads. `detach: true` also detaches the programs and removes
   * every pin (enforcement stops); the default keeps them pinned and enforcing for the next loader to adopt.
   */
  close(options?: { detach?: boolean }): Promise<void>
  /**
   * `await using interceptor = await Interceptor.load(...)`: `close()` when the scope ends, without `detach`,
   * so the pinned programs keep enforcing (call `close({detach: true})` first to stop enforcement).
   */
  [Symbol.asyncDispose](): Promise<void>
}
