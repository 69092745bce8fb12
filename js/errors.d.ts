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

/** Thrown by every parse function; `code` is always `ERR_CONTRACT_VALIDATION`. */
export declare class ContractValidationError extends Error {
  readonly name: 'ContractValidationError'
  readonly code: 'ERR_CONTRACT_VALIDATION'
  /** Name of the schema that rejected the input. */
  readonly schema: string
  /** Every problem found, never empty. */
  readonly issues: ContractIssue[]
}

export type SafeParseResult<T> = { success: true; data: T } | { success: false; error: ContractValidationError }

/** A schema with zod's parse surface; every rule is checked in Rust. */
export interface Schema<T> {
  readonly name: string
  /** Returns the validated value or throws ContractValidationError. */
  parse(input: unknown): T
  /** Never throws for invalid input. */
  safeParse(input: unknown): SafeParseResult<T>
}

export declare function makeSchema<T>(name: string, parse: (input: unknown) => T): Schema<T>
export declare function formatIssues(issues: ContractIssue[]): string
