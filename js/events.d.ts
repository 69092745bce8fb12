import type { ContractIssue, Schema } from './errors'
import type { DataplaneHook, DataplaneProtocol } from './codes'
import type {
  DataplaneAllowCode,
  DataplaneDenyCode,
  DataplaneObserveWouldAllowCode,
  DataplaneObserveWouldBlockCode,
} from './code-lists'

export type { DataplaneAllowCode, DataplaneDenyCode } from './code-lists'

/** Fields every DataplanePacketEvent may carry besides the code, verdict and would_block. */
export type DataplanePacketEventFields = {
  code_namespace: 'dataplane_verdict'
  hook?: DataplaneHook
  /** cgroup v2 id as decimal text (a u64 does not fit a JavaScript number); no leading zeros. */
  cgroup_id?: string
  message?: string
  /** `icmp`: an ICMP or ICMPv6 ping socket; `raw`, `packet`, `xdp`: a socket refused at creation (or a raw packet). */
  protocol?: DataplaneProtocol
  /** Canonical IPv4 or IPv6 text (`10.0.0.1`, `2001:db8::1`, `::ffff:10.0.0.1`). */
  dst_ip?: string
  /** Integer 0..65535. */
  dst_port?: number
  /** Integer 0..4294967295. */
  pid?: number
  /** Integer 0..4294967295. */
  uid?: number
  /** Process name, at most 16 bytes of UTF-8. */
  comm?: string
  /** Id of the policy rule that decided. */
  rule_id?: string
  /** SPEC 4b: the DNS name whose answer taught the destination, or the name of a refused query (hook `dns`). */
  dns_name?: string
  /** Integer 0..2^53-1. */
  policy_generation?: number
  /** From the managed-cgroup entry. */
  workload_id?: string
  /** RFC 3339 date-time, up to nanoseconds, e.g. `2024-05-01T12:00:00.123456789Z`. */
  observed_at?: string
}

/** Observe-mode codes: verdict `allow`, would_block required. */
export type DataplaneObserveCode = DataplaneObserveWouldAllowCode | DataplaneObserveWouldBlockCode

/**
 * A dataplane verdict event. Discriminated by `reason_code`: the verdict is the code's verdict, and
 * `would_block` exists exactly for the observe codes (false for OBSERVE_WOULD_ALLOW, true for the OBSERVE_WOULD_DENY_* codes).
 */
export type DataplanePacketEvent =
  | (DataplanePacketEventFields & { reason_code: DataplaneAllowCode; verdict: 'allow'; would_block?: never })
  | (DataplanePacketEventFields & { reason_code: DataplaneDenyCode; verdict: 'deny'; would_block?: never })
  | (DataplanePacketEventFields & { reason_code: DataplaneObserveWouldAllowCode; verdict: 'allow'; would_block: false })
  | (DataplanePacketEventFields & { reason_code: DataplaneObserveWouldBlockCode; verdict: 'allow'; would_block: true })

/**
 * The log record of an event: the same shape, keys in table order starting with `code_namespace`,
 * `would_block` kept when false, empty optional strings (message, comm, rule_id, dns_name, workload_id) dropped.
 */
export type DataplaneLogRecord = DataplanePacketEvent

/** Every key a DataplanePacketEvent may have, in table (output) order. */
export declare const DATAPLANE_PACKET_EVENT_KEYS: readonly (keyof DataplanePacketEventFields | 'reason_code' | 'verdict' | 'would_block')[]

/**
 * Parses a DataplanePacketEvent object (strict: every rule of SPEC section 3, all issues listed).
 * Returns a new object with the keys in table order. Throws ContractValidationError.
 */
export declare function parseDataplanePacketEvent(input: unknown): DataplanePacketEvent

/** `parse`/`safeParse` around parseDataplanePacketEvent. */
export declare const DataplanePacketEventSchema: Schema<DataplanePacketEvent>

/** Validates an event and returns its log record. Throws ContractValidationError for an invalid event. */
export declare function serializeDataplanePacketEventToLog(event: unknown): DataplaneLogRecord

/**
 * Parses one event from JSON text (UTF-8 bytes or a string). Invalid JSON is one `invalid_json` issue with
 * line and column; lone-surrogate escapes and duplicate keys are rejected. Throws ContractValidationError;
 * TypeError for other input types.
 */
export declare function parseDataplanePacketEventJson(input: Buffer | Uint8Array | string): DataplanePacketEvent

/** One rejected NDJSON line. */
export interface NdjsonLineError {
  /** 1-based line number in the input (blank lines count). */
  line: number
  issues: ContractIssue[]
}

/** The outcome of an NDJSON batch. */
export interface DataplanePacketEventBatch {
  /** The valid events, in input order. */
  records: DataplanePacketEvent[]
  /** One entry per rejected line. */
  errors: NdjsonLineError[]
}

/**
 * Parses newline-delimited JSON events; each line is judged on its own. Blank lines are skipped, `\r\n` is
 * accepted, the last line needs no newline. Never throws for invalid content; TypeError for other input types.
 */
export declare function parseDataplanePacketEventNdjson(input: Buffer | Uint8Array | string): DataplanePacketEventBatch
