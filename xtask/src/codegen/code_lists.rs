//! Renders the code lists for the other languages of the project: the C headers `native/include/reason_codes.h`
//! and `native/include/control_authz_codes.h` (included by the eBPF programs) and the TypeScript declaration
//! `js/code-lists.d.ts`, so neither C nor TypeScript can spell or number a code differently from Rust.
//!
//! `cargo xtask codegen` writes them; `cargo xtask codegen --check` fails when a committed one differs.

use interceptor_ebpf_core::contract::config::Environment;
use interceptor_ebpf_core::contract::control::protocol::{Command, HealthStatus};
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::layer::{Layer, LayerStateName};
use interceptor_ebpf_core::contract::modes::{FailMode, Mode};
use interceptor_ebpf_core::contract::policy::{RuleAction, RuleProtocol};
use interceptor_ebpf_core::contract::reason_codes::{
    ControlAuthzCode, DataplaneReasonCode, Verdict,
};
use interceptor_ebpf_core::contract::wire_literal::{alternatives, WireLiteral};

use super::dataplane_error_codes;

/// Path (relative to the workspace root) and contents of every code-list file.
pub fn render_all() -> Result<Vec<(&'static str, String)>, String> {
    let dataplane_error_codes = dataplane_error_codes::codes()?;
    Ok(vec![
        ("native/include/reason_codes.h", render_reason_codes_h()),
        (
            "native/include/control_authz_codes.h",
            render_control_authz_codes_h(),
        ),
        (
            "js/code-lists.d.ts",
            render_ts_code_lists(&dataplane_error_codes),
        ),
    ])
}

/// `js/code-lists.d.ts`: both code lists as readonly tuples, so TypeScript derives exact unions from them, and
/// every other closed list of the contract as a union type, so no `.d.ts` spells a hook, protocol, mode or
/// command by hand and a value appended to a Rust list reaches the types.
fn render_ts_code_lists(dataplane_error_codes: &[&str]) -> String {
    fn tuple(out: &mut String, doc: &str, name: &str, codes: impl Iterator<Item = &'static str>) {
        out.push_str(&format!(
            "/** {doc} */\nexport declare const {name}: readonly [\n"
        ));
        for code in codes {
            out.push_str(&format!("  '{code}',\n"));
        }
        out.push_str("]\n");
    }
    let mut out = String::from(
        "// Generated from the Rust lists of crates/core/src/contract/ and DataplaneError::code by `cargo xtask codegen`. Do not edit.\n\n",
    );
    tuple(
        &mut out,
        "Dataplane verdict reason codes (namespace `dataplane_verdict`), in value order from 1.",
        "dataplaneVerdictReasonCodes",
        DataplaneReasonCode::ALL.iter().map(|c| c.as_str()),
    );
    out.push('\n');
    tuple(
        &mut out,
        "Control-plane error codes (namespace `control_authz`), in value order from 1.",
        "controlPlaneAuthzErrorCodes",
        ControlAuthzCode::ALL.iter().map(|c| c.as_str()),
    );
    fn union<T: WireLiteral>() -> String {
        alternatives::<T>(|s| format!("'{s}'"), " | ")
    }
    // The reason codes by what an event with the code must carry: the arms of the event's union type.
    let codes = |verdict: Verdict, would_block: Option<bool>| {
        DataplaneReasonCode::ALL
            .iter()
            .filter(|c| c.verdict() == verdict && c.would_block() == would_block)
            .map(|c| format!("'{}'", c.as_str()))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for (name, doc, values) in [
        (
            "Verdict",
            "The verdict of a dataplane reason code.",
            union::<Verdict>(),
        ),
        (
            "DataplaneAllowCode",
            "Dataplane codes whose verdict is `allow` and that carry no would_block.",
            codes(Verdict::Allow, None),
        ),
        (
            "DataplaneDenyCode",
            "Dataplane codes whose verdict is `deny`.",
            codes(Verdict::Deny, None),
        ),
        (
            "DataplaneObserveWouldAllowCode",
            "Observe-mode codes with verdict `allow` and would_block `false`.",
            codes(Verdict::Allow, Some(false)),
        ),
        (
            "DataplaneObserveWouldBlockCode",
            "Observe-mode codes with verdict `allow` and would_block `true`: enforce would have refused.",
            codes(Verdict::Allow, Some(true)),
        ),
        (
            "Hook",
            "Where a verdict was made: the four cgroup sock_addr hooks, then the bypass layers' hooks, then the agent's DNS proxy (`dns`).",
            union::<Hook>(),
        ),
        (
            "SockAddrHook",
            "The four cgroup sock_addr hooks that judge `connect()` and UDP `sendmsg()` (`attachedHooks`).",
            Hook::SOCK_ADDR
                .iter()
                .map(|h| format!("'{}'", h.as_str()))
                .collect::<Vec<_>>()
                .join(" | "),
        ),
        (
            "Protocol",
            "The transport of a judged call, socket or packet.",
            union::<Protocol>(),
        ),
        (
            "RuleProtocol",
            "The protocols a policy rule may name (a rule without one covers every protocol the hooks judge).",
            union::<RuleProtocol>(),
        ),
        (
            "Layer",
            "The bypass layers (docs/threat-model.md).",
            union::<Layer>(),
        ),
        (
            "LayerState",
            "A bypass layer's state: attached, disabled by the options, or unavailable on this kernel.",
            union::<LayerStateName>(),
        ),
        ("Mode", "Enforcement mode.", union::<Mode>()),
        (
            "FailMode",
            "What enforce mode does while degraded.",
            union::<FailMode>(),
        ),
        (
            "RuleAction",
            "What a matching policy rule does.",
            union::<RuleAction>(),
        ),
        (
            "ControlProtocolCommand",
            "The control protocol's commands.",
            union::<Command>(),
        ),
        (
            "HealthStatus",
            "GetHealth's status.",
            union::<HealthStatus>(),
        ),
        (
            "Environment",
            "The agent configuration's environment.",
            union::<Environment>(),
        ),
        (
            "DataplaneNativeErrorCode",
            "`code` of the dataplane's errors (`DataplaneError::code` in crates/core/src/dataplane/error.rs).",
            dataplane_error_codes
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(" | "),
        ),
    ] {
        out.push_str(&format!("\n/** {doc} */\nexport type {name} = {values}\n"));
    }
    out
}

/// What distinguishes one generated header from the other.
struct HeaderSpec<'a> {
    guard: &'a str,
    what: &'a str,
    enum_name: &'a str,
    /// Prefix of every code's C name.
    prefix: &'a str,
    /// C name of value 0.
    unspecified: &'a str,
    /// C name of the largest value, for range checks in C.
    max_name: &'a str,
}

fn render(h: HeaderSpec<'_>, entries: impl Iterator<Item = (&'static str, u32)>) -> String {
    let HeaderSpec {
        guard,
        what,
        enum_name,
        prefix,
        unspecified,
        max_name,
    } = h;
    let mut out = String::new();
    out.push_str("/* SPDX-License-Identifier: Apache-2.0 */\n");
    out.push_str(
        "/* Generated from crates/core/src/contract/reason_codes.rs by `cargo xtask codegen`. Do not edit. */\n",
    );
    out.push_str(&format!(
        "/* {what} Values are permanent: never changed, never reused. */\n"
    ));
    out.push_str(&format!("#ifndef {guard}\n#define {guard}\n\n"));
    out.push_str(&format!("typedef enum {enum_name} {{\n"));
    out.push_str(&format!("    {unspecified} = 0,\n"));
    let mut max = 0;
    for (wire, value) in entries {
        out.push_str(&format!("    {prefix}{wire} = {value},\n"));
        max = max.max(value);
    }
    out.push_str(&format!("}} {enum_name}_t;\n\n"));
    out.push_str(&format!("#define {max_name} {max}\n\n"));
    out.push_str(&format!("#endif /* {guard} */\n"));
    out
}

/// `reason_codes.h`: enum `broker_dataplane_verdict_reason_code_t`, names `BROKER_DP_REASON_<CODE>`.
fn render_reason_codes_h() -> String {
    render(
        HeaderSpec {
            guard: "BROKER_INTERCEPTOR_EBPF_REASON_CODES_H",
            what: "Dataplane verdict reason codes (namespace dataplane_verdict).",
            enum_name: "broker_dataplane_verdict_reason_code",
            prefix: "BROKER_DP_REASON_",
            unspecified: "BROKER_DP_REASON_UNSPECIFIED",
            max_name: "BROKER_DP_REASON_MAX_VALUE",
        },
        DataplaneReasonCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.value())),
    )
}

/// `control_authz_codes.h`: enum `broker_control_authz_error_code_t`, names `BROKER_<CODE>`.
fn render_control_authz_codes_h() -> String {
    render(
        HeaderSpec {
            guard: "BROKER_INTERCEPTOR_EBPF_CONTROL_AUTHZ_CODES_H",
            what: "Control-plane authorization error codes (namespace control_authz).",
            enum_name: "broker_control_authz_error_code",
            prefix: "BROKER_",
            unspecified: "BROKER_CTRL_AUTH_UNSPECIFIED",
            max_name: "BROKER_CTRL_AUTH_MAX_VALUE",
        },
        ControlAuthzCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.value())),
    )
}
