import type { Schema } from './errors'
import type { RuleAction, RuleProtocol } from './code-lists'

/** A broker endpoint: always TCP. `ip` is canonical IPv4 or IPv6 text (not IPv4-mapped IPv6). */
export interface PolicyBrokerEndpoint {
  ip: string
  /** 1..=65535 */
  port: number
}

/** A broker endpoint named by DNS (SPEC 4b): an exact lower-case name, no pattern (`broker.internal`). */
export interface PolicyBrokerName {
  fqdn: string
  /** 1..=65535 */
  port: number
  ip?: never
}

/** `any` (default): every query is answered; `policy`: a query for a name no rule or broker entry names is refused. */
export type PolicyDnsQueries = 'any' | 'policy'

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
  fqdn?: never
}

/** A rule by name (SPEC 4b): the addresses the DNS proxy's answers for the name teach are judged by it. */
export interface PolicyFqdnRule extends Omit<PolicyRule, 'cidr' | 'fqdn'> {
  /** Lower-case DNS name of at least two labels (`api.github.com`) or `*.` + such a name (`*.github.com`). */
  fqdn: string
  cidr?: never
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
  broker: Array<PolicyBrokerEndpoint | PolicyBrokerName>
  /** At most 1024. */
  dns: PolicyDnsEndpoint[]
  /** At most 131072 per address family, and 4096 by name. */
  rules: Array<PolicyRule | PolicyFqdnRule>
  sampling?: PolicySampling
  /** Default `any`. */
  dnsQueries?: PolicyDnsQueries
}

/** A validated snapshot with defaults filled in. */
export interface PolicySnapshot {
  /** Entries by address first, then those by name. */
  broker: Array<PolicyBrokerEndpoint | PolicyBrokerName>
  dns: Array<Required<PolicyDnsEndpoint>>
  rules: Array<PolicyRule | PolicyFqdnRule>
  sampling: Required<PolicySampling>
  dnsQueries: PolicyDnsQueries
}

export declare const PolicySnapshotSchema: Schema<PolicySnapshot>
/** Validates a snapshot (every issue with its path, e.g. `rules[3].cidr`) and returns it normalised. */
export declare function parsePolicySnapshot(input: unknown): PolicySnapshot
