// Generated from the Rust lists of crates/core/src/contract/ and DataplaneError::code by `cargo xtask codegen`. Do not edit.

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
  'DENY_SOCKET_CREATE',
  'OBSERVE_WOULD_DENY_SOCKET_CREATE',
  'DENY_PACKET_EGRESS',
  'OBSERVE_WOULD_DENY_PACKET_EGRESS',
  'DENY_DNS_QUERY',
  'OBSERVE_WOULD_DENY_DNS_QUERY',
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

/** Dataplane codes whose verdict is `allow` and that carry no would_block. */
export type DataplaneAllowCode = 'UNMANAGED_ALLOW' | 'ALLOW_EXPLICIT' | 'ALLOW_BROKER' | 'ALLOW_DNS' | 'ALLOW_DEGRADED_FAIL_OPEN'

/** Dataplane codes whose verdict is `deny`. */
export type DataplaneDenyCode = 'DENY_EXPLICIT' | 'DENY_DEFAULT' | 'DENY_DEGRADED_FAIL_CLOSED' | 'DENY_SOCKET_CREATE' | 'DENY_PACKET_EGRESS' | 'DENY_DNS_QUERY'

/** Observe-mode codes with verdict `allow` and would_block `false`. */
export type DataplaneObserveWouldAllowCode = 'OBSERVE_WOULD_ALLOW'

/** Observe-mode codes with verdict `allow` and would_block `true`: enforce would have refused. */
export type DataplaneObserveWouldBlockCode = 'OBSERVE_WOULD_DENY_EXPLICIT' | 'OBSERVE_WOULD_DENY_DEFAULT' | 'OBSERVE_WOULD_DENY_SOCKET_CREATE' | 'OBSERVE_WOULD_DENY_PACKET_EGRESS' | 'OBSERVE_WOULD_DENY_DNS_QUERY'

/** Where a verdict was made: the four cgroup sock_addr hooks, then the bypass layers' hooks, then the agent's DNS proxy (`dns`). */
export type Hook = 'connect4' | 'connect6' | 'sendmsg4' | 'sendmsg6' | 'sock_create' | 'socket_create_lsm' | 'egress' | 'dns'

/** The four cgroup sock_addr hooks that judge `connect()` and UDP `sendmsg()` (`attachedHooks`). */
export type SockAddrHook = 'connect4' | 'connect6' | 'sendmsg4' | 'sendmsg6'

/** The transport of a judged call, socket or packet. */
export type Protocol = 'tcp' | 'udp' | 'icmp' | 'udplite' | 'raw' | 'packet' | 'xdp'

/** The protocols a policy rule may name (a rule without one covers every protocol the hooks judge). */
export type RuleProtocol = 'tcp' | 'udp'

/** The bypass layers (docs/threat-model.md). */
export type Layer = 'sock_create' | 'socket_create_lsm' | 'egress' | 'socket_storage'

/** A bypass layer's state: attached, disabled by the options, or unavailable on this kernel. */
export type LayerState = 'active' | 'disabled' | 'unavailable'

/** Enforcement mode. */
export type Mode = 'enforce' | 'observe'

/** What enforce mode does while degraded. */
export type FailMode = 'closed' | 'open'

/** What a matching policy rule does. */
export type RuleAction = 'allow' | 'deny'

/** The control protocol's commands. */
export type ControlProtocolCommand = 'GetHealth' | 'GetStatus' | 'GetPolicySummary' | 'GetPolicySnapshot' | 'ReplacePolicySnapshot' | 'ValidatePolicySnapshot' | 'UpsertManagedCgroup' | 'DeleteManagedCgroup' | 'SetGlobalMode' | 'SetCgroupMode' | 'Shutdown' | 'SubscribeEvents' | 'GetDnsStatus'

/** GetHealth's status. */
export type HealthStatus = 'ok' | 'degraded'

/** The agent configuration's environment. */
export type Environment = 'development' | 'test' | 'production'

/** `code` of the dataplane's errors (`DataplaneError::code` in crates/core/src/dataplane/error.rs). */
export type DataplaneNativeErrorCode = 'ERR_DATAPLANE_IO' | 'ERR_DATAPLANE_CGROUP_ROOT_NOT_FOUND' | 'ERR_DATAPLANE_NOT_CGROUP2' | 'ERR_DATAPLANE_BPFFS_UNAVAILABLE' | 'ERR_DATAPLANE_LOAD' | 'ERR_DATAPLANE_OBJECT' | 'ERR_DATAPLANE_ATTACH' | 'ERR_DATAPLANE_LAYER' | 'ERR_DATAPLANE_MAP' | 'ERR_DATAPLANE_POLICY_TOO_LARGE' | 'ERR_DATAPLANE_INVALID_POLICY' | 'ERR_DATAPLANE_NOT_MANAGED' | 'ERR_DATAPLANE_CGROUP_ROOT_REFUSED' | 'ERR_DATAPLANE_ALREADY_SUBSCRIBED' | 'ERR_DATAPLANE_EVENT_READER' | 'ERR_DATAPLANE_CLOSED' | 'ERR_DATAPLANE_INVALID_OPTION' | 'ERR_DATAPLANE_ADOPT'
