/* SPDX-License-Identifier: Apache-2.0 */
/* Generated from crates/core/src/contract/reason_codes.rs by `cargo xtask codegen`. Do not edit. */
/* Control-plane authorization error codes (namespace control_authz). Values are permanent: never changed, never reused. */
#ifndef BROKER_INTERCEPTOR_EBPF_CONTROL_AUTHZ_CODES_H
#define BROKER_INTERCEPTOR_EBPF_CONTROL_AUTHZ_CODES_H

typedef enum broker_control_authz_error_code {
    BROKER_CTRL_AUTH_UNSPECIFIED = 0,
    BROKER_CTRL_AUTH_PEERCRED_UNAVAILABLE = 1,
    BROKER_CTRL_AUTH_PEERCRED_REJECTED_UID = 2,
    BROKER_CTRL_AUTH_PEERCRED_REJECTED_GID = 3,
    BROKER_CTRL_AUTH_SOCKET_MODE_INVALID = 4,
    BROKER_CTRL_AUTH_SOCKET_OWNER_INVALID = 5,
    BROKER_CTRL_REQUEST_MALFORMED = 6,
    BROKER_CTRL_REQUEST_PAYLOAD_INVALID = 7,
    BROKER_CTRL_COMMAND_FAILED = 8,
} broker_control_authz_error_code_t;

#define BROKER_CTRL_AUTH_MAX_VALUE 8

#endif /* BROKER_INTERCEPTOR_EBPF_CONTROL_AUTHZ_CODES_H */
