import type { Schema } from './errors'
import type { dataplaneVerdictReasonCodes, controlPlaneAuthzErrorCodes, Verdict, Hook, Protocol } from './code-lists'

export { dataplaneVerdictReasonCodes, controlPlaneAuthzErrorCodes } from './code-lists'

export type DataplaneVerdictReasonCode = (typeof dataplaneVerdictReasonCodes)[number]
export type ControlPlaneAuthzErrorCode = (typeof controlPlaneAuthzErrorCodes)[number]
export type DataplaneVerdict = Verdict
export type DataplaneHook = Hook
export type DataplaneProtocol = Protocol

type OverlappingCodes = Extract<DataplaneVerdictReasonCode, ControlPlaneAuthzErrorCode>

/**
 * Compile-time guard: `true` while no code is in both lists, otherwise an object naming the overlap.
 * `NoOverlapCheck` below requires `true`, so `tsc` fails the moment a code is added to both lists.
 */
export type DataplaneAndControlPlaneCodesMustNotOverlap = [OverlappingCodes] extends [never]
  ? true
  : { error: 'reason codes appear in both namespaces'; overlap: OverlappingCodes }
type AssertTrue<T extends true> = T
export type NoOverlapCheck = AssertTrue<DataplaneAndControlPlaneCodesMustNotOverlap>

export declare const DataplaneVerdictReasonCodeSchema: Schema<DataplaneVerdictReasonCode>
export declare const ControlPlaneAuthzErrorCodeSchema: Schema<ControlPlaneAuthzErrorCode>
export declare const DataplaneVerdictSchema: Schema<DataplaneVerdict>
export declare const DataplaneHookSchema: Schema<DataplaneHook>

/** Throws (code `ERR_REASON_CODE_OVERLAP`) if a code is in both namespaces. Also runs when the module loads. */
export declare function assertNoReasonCodeOverlap(): void
