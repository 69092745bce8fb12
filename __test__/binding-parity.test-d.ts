// The generated binding (binding.d.ts, from the #[napi] Rust types) against the hand-written public types: what
// the addon returns must be what index.d.ts promises. `pnpm run typecheck` compiles this file (tsconfig.json), so
// a field added, removed, renamed, made optional or given another type on either side fails the type check.
//
// The binding types strings as `string` where the public types name their literal unions ('enforce' |
// 'observe'); the checks compare them with the public strings widened back to `string`, and separately check
// that every public type narrows the binding's (is assignable to it).
import type * as binding from '../binding'
import type {
  DataplaneLayerCounters,
  DataplaneLayerStatus,
  DataplaneVerdictCount,
  DataplaneStatus,
  Interceptor,
  ManagedCgroup,
  PolicySummary,
  StatusData,
} from '../index'

/** Exactly equal types (the usual mutual-conditional trick: no `any` slips through). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
type Expect<T extends true> = T
type Assignable<From, To> = [From] extends [To] ? true : false

type RequiredKeys<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? never : K }[keyof T]

/** Literal strings back to `string`, through arrays and objects; optional keys stay optional. */
type Widen<T> = T extends string
  ? string
  : T extends readonly (infer U)[]
    ? Widen<U>[]
    : T extends object
      ? { [K in keyof T]: Widen<T[K]> }
      : T

/**
 * The public type `P` is the binding type `B` with narrower strings: the same keys, the same required keys,
 * `P` assignable to `B`, and `B` assignable to `P` once `P`'s literal unions are widened.
 */
type Parity<B, P> = [
  Equal<keyof B, keyof P>,
  Equal<RequiredKeys<B>, RequiredKeys<P>>,
  Assignable<P, B>,
  Assignable<B, Widen<P>>,
] extends [true, true, true, true]
  ? true
  : false

type NativeStatus = ReturnType<binding.NativeInterceptor['status']>

export type StatusMatches = Expect<Equal<NativeStatus, binding.JsDataplaneStatus>>
export type StatusParity = Expect<Parity<NativeStatus, ReturnType<Interceptor['status']>>>
export type StatusIsDataplaneStatus = Expect<Equal<ReturnType<Interceptor['status']>, DataplaneStatus>>
export type ManagedCgroupParity = Expect<Parity<binding.JsManagedCgroup, ManagedCgroup>>
export type UpsertParity = Expect<
  Parity<ReturnType<binding.NativeInterceptor['upsertManagedCgroup']>, ReturnType<Interceptor['upsertManagedCgroup']>>
>
export type DeleteParity = Expect<
  Equal<ReturnType<binding.NativeInterceptor['deleteManagedCgroup']>, ReturnType<Interceptor['deleteManagedCgroup']>>
>
export type PolicySummaryParity = Expect<Parity<binding.JsPolicySummary, PolicySummary>>
export type LayerCountersParity = Expect<Parity<binding.JsLayerCounters, DataplaneLayerCounters>>
export type VerdictCountParity = Expect<Parity<binding.JsVerdictCount, DataplaneVerdictCount>>

// A layer's status is a union in the public type (`reason` exactly when `unavailable`), which one Rust struct
// cannot say: each member must narrow the binding's struct, and together they use exactly its keys.
export type LayerStatusKeys = Expect<Equal<keyof binding.JsLayerStatus, keyof DataplaneLayerStatus | 'reason'>>
export type LayerStatusNarrows = Expect<Assignable<DataplaneLayerStatus, binding.JsLayerStatus>>
export type LayerStatusStates = Expect<Assignable<binding.JsLayerStatus['state'], Widen<DataplaneLayerStatus['state']>>>
export type StatusLayers = Expect<Equal<DataplaneStatus['layers'], DataplaneLayerStatus[]>>

// The agent's GetStatus data is the loader's status without the loader's own keys (the agent's strict parser,
// `crates/core/src/contract/control/protocol/response.rs`, accepts exactly these keys).
type LoaderOnlyKey = 'cgroupRoot' | 'pinDir' | 'adopted' | 'heartbeatGraceMs' | 'eventsDelivered'
export type AgentStatusKeys = Expect<
  Equal<keyof StatusData, Exclude<keyof binding.JsDataplaneStatus, LoaderOnlyKey>>
>
// `learnedAddresses` (SPEC 4b) is optional in GetStatus (agents that predate it omit it), always there in status().
export type AgentStatusNarrows = Expect<
  Assignable<
    Omit<StatusData, 'attachedHooks' | 'managedCgroups' | 'learnedAddresses'>,
    Omit<binding.JsDataplaneStatus, LoaderOnlyKey | 'attachedHooks' | 'managedCgroups' | 'learnedAddresses'>
  >
>
export type LearnedAddressesKeepTheirType = Expect<
  Equal<NonNullable<StatusData['learnedAddresses']>, binding.JsDataplaneStatus['learnedAddresses']>
>

// The control socket's frame limit: a number the client reads from the addon (js/control-client.js).
export type FrameLimit = Expect<Equal<typeof binding.MAX_CONTROL_LINE_BYTES, number>>
