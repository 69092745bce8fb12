import type { Schema } from './errors'
import type { RuleAction, RuleProtocol } from './code-lists'

/** A broker endpoint: always TCP. `ip` is canonical IPv4 or IPv6 text (not IPv4-mapped IPv6). */
export interface PolicyBrokerEndpoint {
  ip: string
  /** 1..=65535 */
  port: number
}

/** A DNS resolver endpoint (UDP and TCP). */
export interface PolicyDnsEndpoint {
  ip: string
  /** 1..=65535, default 53 */
  port?: number
}

export interface PolicyRule {
  /** 1..=63 bytes, no control characters, unique in the snapshot; reported as `rule_id` in events. */
  id: string
  action: RuleAction
  /** Canonical CIDR with host bits zero (`10.0.0.0/8`, `2001:db8::/32`); IPv4-mapped IPv6 ranges are refused. */
  cidr: string
  /** Non-empty, each 1..=65535, no duplicates; omit to match every port. */
  ports?: number[]
  /** Omit to match every protocol the hooks judge: TCP, UDP and ICMP ping sockets. */
  protocol?: RuleProtocol
}

export interface PolicySampling {
  /** Emit one in N allow events of managed cgroups; 1 (default) = all, 0 = none. u32. */
  allowOneIn?: number
  /** Emit one in N UNMANAGED_ALLOW events; 0 (default) = none. u32. */
  unmanagedOneIn?: number
}

/** The policy snapshot as written by a user (see docs/policy-snapshot.md). Unknown keys are rejected. */
export interface PolicySnapshotInput {
  /** At most 1024. */
  broker: PolicyBrokerEndpoint[]
  /** At most 1024. */
  dns: PolicyDnsEndpoint[]
  /** At most 131072 per address family. */
  rules: PolicyRule[]
  sampling?: PolicySampling
}

/** A validated snapshot with defaults filled in. */
export interface PolicySnapshot {
  broker: PolicyBrokerEndpoint[]
  dns: Array<Required<PolicyDnsEndpoint>>
  rules: PolicyRule[]
  sampling: Required<PolicySampling>
}

export declare const PolicySnapshotSchema: Schema<PolicySnapshot>
/** Validates a snapshot (every issue with its path, e.g. `rules[3].cidr`) and returns it normalised. */
export declare function parsePolicySnapshot(input: unknown): PolicySnapshot
