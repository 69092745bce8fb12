// Generated from src/contract/reason_codes.rs and src/contract/hook.rs by `pnpm run gen:headers`. Do not edit.

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

/** Dataplane codes whose verdict is `allow` and that carry no would_block. */
export type DataplaneAllowCode =
  | 'UNMANAGED_ALLOW'
  | 'ALLOW_EXPLICIT'
  | 'ALLOW_BROKER'
  | 'ALLOW_DNS'
  | 'ALLOW_DEGRADED_FAIL_OPEN'

/** Dataplane codes whose verdict is `deny`. */
export type DataplaneDenyCode =
  | 'DENY_EXPLICIT'
  | 'DENY_DEFAULT'
  | 'DENY_DEGRADED_FAIL_CLOSED'
  | 'DENY_SOCKET_CREATE'
  | 'DENY_PACKET_EGRESS'

/** Observe-mode codes with verdict `allow` and would_block `false`. */
export type DataplaneObserveWouldAllowCode =
  | 'OBSERVE_WOULD_ALLOW'

/** Observe-mode codes with verdict `allow` and would_block `true`: enforce would have refused. */
export type DataplaneObserveWouldBlockCode =
  | 'OBSERVE_WOULD_DENY_EXPLICIT'
  | 'OBSERVE_WOULD_DENY_DEFAULT'
  | 'OBSERVE_WOULD_DENY_SOCKET_CREATE'
  | 'OBSERVE_WOULD_DENY_PACKET_EGRESS'

/** Where a verdict was made (src/contract/hook.rs), in value order from 1. */
export type DataplaneHook =
  | 'connect4'
  | 'connect6'
  | 'sendmsg4'
  | 'sendmsg6'
  | 'sock_create'
  | 'socket_create_lsm'
  | 'egress'

/** The transport of a judged call or packet (src/contract/hook.rs). */
export type DataplaneProtocol =
  | 'tcp'
  | 'udp'
  | 'icmp'
  | 'udplite'
  | 'raw'
  | 'packet'
  | 'xdp'
