/** One problem found in an input, shaped like a zod issue. */
export interface ContractIssue {
  /** Where the problem is: object keys and array indexes from the root of the input. */
  path: Array<string | number>
  /** Machine-readable kind, e.g. `invalid_type`, `invalid_value`, `unrecognized_keys`, `custom`. */
  code:
    | 'invalid_type'
    | 'invalid_value'
    | 'unrecognized_keys'
    | 'too_big'
    | 'too_small'
    | 'invalid_format'
    | 'custom'
    | 'invalid_json'
  message: string
}

import type { DataplaneNativeErrorCode } from './code-lists'

/** Thrown by every parse function; `code` is always `ERR_CONTRACT_VALIDATION`. */
export declare class ContractValidationError extends Error {
  readonly name: 'ContractValidationError'
  readonly code: 'ERR_CONTRACT_VALIDATION'
  /** Name of the schema that rejected the input. */
  readonly schema: string
  /** Every problem found, never empty. */
  readonly issues: ContractIssue[]
}

/**
 * `code` of a DataplaneError: the dataplane's own codes (`ERR_DATAPLANE_*`, generated from
 * `DataplaneError::code` in Rust; docs/node-api.md says when each occurs), and
 * `ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM` from `Interceptor.load` where the WebAssembly build serves the
 * process (no dataplane there).
 */
export type DataplaneErrorCode = DataplaneNativeErrorCode | 'ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM'

export interface DataplaneErrorOptions {
  cause?: unknown
  verifierLog?: string
}

/**
 * Why an `Interceptor` operation failed, other than invalid input (a ContractValidationError): a stable `code`
 * and a one-line `message` that includes the cause (the kernel's errno, aya's error).
 */
export declare class DataplaneError extends Error {
  constructor(code: DataplaneErrorCode, message: string, options?: DataplaneErrorOptions)
  readonly name: 'DataplaneError'
  readonly code: DataplaneErrorCode
  /** `ERR_DATAPLANE_LOAD` only: the verifier's whole output (possibly empty), kept out of `message`. */
  readonly verifierLog?: string
}

export type SafeParseResult<T> = { success: true; data: T } | { success: false; error: ContractValidationError }

/**
 * The Standard Schema v1 interface (https://standardschema.dev), the one zod, valibot and arktype implement and
 * form, RPC and HTTP libraries accept. Declared here, structurally identical to `@standard-schema/spec`, so
 * that no dependency is needed to use it.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaV1.Props<Input, Output>
}

export declare namespace StandardSchemaV1 {
  interface Props<Input = unknown, Output = Input> {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => Result<Output> | Promise<Result<Output>>
    /** Type-level only: never present at run time. */
    readonly types?: Types<Input, Output> | undefined
  }
  type Result<Output> = SuccessResult<Output> | FailureResult
  interface SuccessResult<Output> {
    readonly value: Output
    readonly issues?: undefined
  }
  interface FailureResult {
    readonly issues: ReadonlyArray<Issue>
  }
  interface Issue {
    readonly message: string
    readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined
  }
  interface PathSegment {
    readonly key: PropertyKey
  }
  interface Types<Input = unknown, Output = Input> {
    readonly input: Input
    readonly output: Output
  }
  type InferInput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['input']
  type InferOutput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['output']
}

/** What this package's schemas return from `~standard.validate`: synchronous, issues with the contract's paths. */
export type StandardResult<T> =
  | { readonly value: T; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path: ReadonlyArray<string | number> }> }

/**
 * A schema with zod's parse surface and the Standard Schema v1 interface; every rule is checked in Rust.
 * `StandardSchemaV1.InferOutput<typeof XSchema>` gives the parsed type, as `z.infer` did for the original.
 */
export interface Schema<T> extends StandardSchemaV1<unknown, T> {
  readonly name: string
  /** Returns the validated value or throws ContractValidationError. */
  parse(input: unknown): T
  /** Never throws for invalid input. */
  safeParse(input: unknown): SafeParseResult<T>
  readonly '~standard': StandardProps<T>
}

/** The `~standard` property of this package's schemas: the vendor is fixed and `validate` is synchronous. */
export interface StandardProps<T> extends StandardSchemaV1.Props<unknown, T> {
  readonly vendor: 'interceptor-ebpf'
  /** Never throws for invalid input; returns the parsed value or every issue with its path. */
  readonly validate: (value: unknown) => StandardResult<T>
}

export declare function makeSchema<T>(name: string, parse: (input: unknown) => T): Schema<T>
export declare function formatIssues(issues: ContractIssue[]): string
