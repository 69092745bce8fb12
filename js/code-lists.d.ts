// Generated from the Rust lists of crates/core/src/contract/ by `pnpm run gen:headers`. Do not edit.

/** Dataplane verdict reason codes (namespace `dataplane_verdict`), in value order from 1. */
export declare const dataplaneVerdictReasonCodes: readonly [
  'UNMANAGED_ALLOW',
  'OBSERVE_WOULD_ALLOW',
  'OBSERVE_WOULD_DENY_EXPLICIT',
  'OBSERVE_WOULD_DENY_DEFAULT',
  'ALLOW_EXPLICIT',
  'ALLOW_BROKER',
  'ALLOW_DNS',
  'DENY_EXPLICIT',
  'DENY_DEFAULT',
  'DENY_DEGRADED_FAIL_CLOSED',
  'ALLOW_DEGRADED_FAIL_OPEN',
]

/** Control-plane error codes (namespace `control_authz`), in value order from 1. */
export declare const controlPlaneAuthzErrorCodes: readonly [
  'CTRL_AUTH_PEERCRED_UNAVAILABLE',
  'CTRL_AUTH_PEERCRED_REJECTED_UID',
  'CTRL_AUTH_PEERCRED_REJECTED_GID',
  'CTRL_AUTH_SOCKET_MODE_INVALID',
  'CTRL_AUTH_SOCKET_OWNER_INVALID',
  'CTRL_REQUEST_MALFORMED',
  'CTRL_REQUEST_PAYLOAD_INVALID',
  'CTRL_COMMAND_FAILED',
]

/** The verdict of a dataplane reason code. */
export type Verdict = 'allow' | 'deny'

/** The cgroup sock_addr hooks the dataplane attaches to. */
export type Hook = 'connect4' | 'connect6' | 'sendmsg4' | 'sendmsg6'

/** The transport protocols the dataplane judges. */
export type Protocol = 'tcp' | 'udp'

/** Enforcement mode. */
export type Mode = 'enforce' | 'observe'

/** What enforce mode does while degraded. */
export type FailMode = 'closed' | 'open'

/** What a matching policy rule does. */
export type RuleAction = 'allow' | 'deny'

/** The control protocol's commands. */
export type ControlProtocolCommand = 'GetHealth' | 'GetStatus' | 'GetPolicySummary' | 'ReplacePolicySnapshot' | 'UpsertManagedCgroup' | 'DeleteManagedCgroup' | 'SetGlobalMode' | 'SetCgroupMode' | 'Shutdown' | 'SubscribeEvents'

/** GetHealth's status. */
export type HealthStatus = 'ok' | 'degraded'

/** The agent configuration's environment. */
export type Environment = 'development' | 'test' | 'production'
