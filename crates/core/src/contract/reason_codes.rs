//! The two reason-code taxonomies: a permanent public API (SPEC section 2).
//!
//! Each list is written once, in the `reason_codes!` invocations below. The enum, its numeric values, its wire
//! strings, the C header and the JavaScript arrays are all derived from that one list, so nothing is numbered
//! or spelled twice. Values never change and are never reused; new codes are appended.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The verdict a dataplane reason code stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub const ALL: [Verdict; 2] = [Verdict::Allow, Verdict::Deny];

    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

/// Declares a closed, `#[repr(u32)]` code enum together with its string forms and per-code metadata.
macro_rules! reason_codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $wire:literal $( { $($extra:tt)* } )? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value ),+
        }

        impl $name {
            /// Every code, in value order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire string (`SCREAMING_SNAKE_CASE`).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The stable numeric value, as used by the C headers and the eBPF programs.
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// Parses a wire string; `None` for anything that is not exactly one of this list's codes.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// Maps a numeric value back to its code; `None` for 0 (unspecified) and unknown values.
            pub const fn from_value(v: u32) -> Option<Self> {
                match v { $($value => Some($name::$variant),)+ _ => None }
            }
        }

        impl crate::contract::wire_literal::WireLiteral for $name {
            const VALUES: &'static [Self] = $name::ALL;
            fn wire(self) -> &'static str {
                self.as_str()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_wire(&s).ok_or_else(|| {
                    serde::de::Error::custom(format_args!(
                        "unknown {} `{}`", stringify!($name), s
                    ))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reason_codes! {
    /// Why the dataplane allowed or denied a connect/sendmsg (namespace `dataplane_verdict`).
    pub enum DataplaneReasonCode {
        /// The caller's cgroup is not managed.
        UnmanagedAllow = 1 => "UNMANAGED_ALLOW",
        /// Observe mode: an allow rule matched.
        ObserveWouldAllow = 2 => "OBSERVE_WOULD_ALLOW",
        /// Observe mode: a deny rule matched; enforce would have refused.
        ObserveWouldDenyExplicit = 3 => "OBSERVE_WOULD_DENY_EXPLICIT",
        /// Observe mode: no rule matched; enforce would have refused.
        ObserveWouldDenyDefault = 4 => "OBSERVE_WOULD_DENY_DEFAULT",
        /// An allow rule matched.
        AllowExplicit = 5 => "ALLOW_EXPLICIT",
        /// The destination is a broker endpoint.
        AllowBroker = 6 => "ALLOW_BROKER",
        /// The destination is a DNS resolver endpoint.
        AllowDns = 7 => "ALLOW_DNS",
        /// A deny rule matched.
        DenyExplicit = 8 => "DENY_EXPLICIT",
        /// No rule matched.
        DenyDefault = 9 => "DENY_DEFAULT",
        /// The agent is not beating (or no policy was loaded) and the fail mode is closed.
        DenyDegradedFailClosed = 10 => "DENY_DEGRADED_FAIL_CLOSED",
        /// The agent is not beating (or no policy was loaded) and the fail mode is open.
        AllowDegradedFailOpen = 11 => "ALLOW_DEGRADED_FAIL_OPEN",
        /// A socket that the connect/sendmsg hooks cannot judge (a raw IP socket, a packet or XDP socket, ...)
        /// was refused at creation in a managed cgroup: `socket()` failed with EPERM.
        DenySocketCreate = 12 => "DENY_SOCKET_CREATE",
        /// Observe mode: enforce would have refused this socket at creation.
        ObserveWouldDenySocketCreate = 13 => "OBSERVE_WOULD_DENY_SOCKET_CREATE",
        /// The egress backstop dropped an IP packet of a managed cgroup whose destination the policy denies
        /// (a deny rule, `rule_id` set, or no rule); the sending call failed with EPERM where it was synchronous.
        DenyPacketEgress = 14 => "DENY_PACKET_EGRESS",
        /// Observe mode: the egress backstop would have dropped this packet.
        ObserveWouldDenyPacketEgress = 15 => "OBSERVE_WOULD_DENY_PACKET_EGRESS",
        /// With `dnsQueries: "policy"`, a managed workload asked for a name no fqdn rule, broker name or
        /// pattern names: the agent's DNS proxy answered REFUSED (SPEC 4b; hook `dns`, `dns_name` set).
        DenyDnsQuery = 16 => "DENY_DNS_QUERY",
        /// Observe mode: the DNS proxy would have refused this query, and answered it.
        ObserveWouldDenyDnsQuery = 17 => "OBSERVE_WOULD_DENY_DNS_QUERY",
    }
}

reason_codes! {
    /// Why the control plane refused a request (namespace `control_authz`).
    pub enum ControlAuthzCode {
        /// Peer credentials could not be read.
        PeercredUnavailable = 1 => "CTRL_AUTH_PEERCRED_UNAVAILABLE",
        /// The uid allow-list is set and neither the uid nor the gid is allowed.
        PeercredRejectedUid = 2 => "CTRL_AUTH_PEERCRED_REJECTED_UID",
        /// Only the gid allow-list is set and the gid is not in it.
        PeercredRejectedGid = 3 => "CTRL_AUTH_PEERCRED_REJECTED_GID",
        /// The socket's permission bits differ from the expected mode.
        SocketModeInvalid = 4 => "CTRL_AUTH_SOCKET_MODE_INVALID",
        /// The socket's owner uid:gid differs from the expected owner.
        SocketOwnerInvalid = 5 => "CTRL_AUTH_SOCKET_OWNER_INVALID",
        /// Not JSON, unknown command, unknown field, or frame too large.
        RequestMalformed = 6 => "CTRL_REQUEST_MALFORMED",
        /// The payload fails the command's schema.
        RequestPayloadInvalid = 7 => "CTRL_REQUEST_PAYLOAD_INVALID",
        /// Well-formed and authorized, but could not be applied.
        CommandFailed = 8 => "CTRL_COMMAND_FAILED",
    }
}

impl DataplaneReasonCode {
    /// The verdict this code stands for (SPEC 2, verdict column).
    pub const fn verdict(self) -> Verdict {
        match self {
            Self::DenyExplicit
            | Self::DenyDefault
            | Self::DenyDegradedFailClosed
            | Self::DenySocketCreate
            | Self::DenyPacketEgress
            | Self::DenyDnsQuery => Verdict::Deny,
            _ => Verdict::Allow,
        }
    }

    /// `Some(would_block)` for the observe codes, which must carry it; `None` for every other code, which must
    /// not.
    pub const fn would_block(self) -> Option<bool> {
        match self {
            Self::ObserveWouldAllow => Some(false),
            Self::ObserveWouldDenyExplicit
            | Self::ObserveWouldDenyDefault
            | Self::ObserveWouldDenySocketCreate
            | Self::ObserveWouldDenyPacketEgress
            | Self::ObserveWouldDenyDnsQuery => Some(true),
            _ => None,
        }
    }
}

/// Wire name of the dataplane namespace.
pub const DATAPLANE_NAMESPACE: &str = "dataplane_verdict";
/// Wire name of the control-plane namespace.
pub const CONTROL_AUTHZ_NAMESPACE: &str = "control_authz";

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// True when no wire string appears in both lists. Evaluated at compile time below.
pub const fn reason_code_lists_are_disjoint() -> bool {
    let (dp, ctl) = (DataplaneReasonCode::ALL, ControlAuthzCode::ALL);
    let mut i = 0;
    while i < dp.len() {
        let mut j = 0;
        while j < ctl.len() {
            if str_eq(dp[i].as_str(), ctl[j].as_str()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// True when each list's values are 1..=N in order, so values are dense, ascending and never 0.
const fn values_are_dense() -> bool {
    let mut i = 0;
    while i < DataplaneReasonCode::ALL.len() {
        if DataplaneReasonCode::ALL[i].value() != i as u32 + 1 {
            return false;
        }
        i += 1;
    }
    let mut j = 0;
    while j < ControlAuthzCode::ALL.len() {
        if ControlAuthzCode::ALL[j].value() != j as u32 + 1 {
            return false;
        }
        j += 1;
    }
    true
}

const _: () = assert!(
    reason_code_lists_are_disjoint(),
    "a reason code appears in both the dataplane and the control-plane list"
);
const _: () = assert!(
    values_are_dense(),
    "reason code values must be 1..=N in declaration order"
);

crate::contract::wire_literal::wire_literal_from_all!(Verdict);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplane_values_are_the_published_ones() {
        let published = [
            (1, "UNMANAGED_ALLOW", Verdict::Allow, None),
            (2, "OBSERVE_WOULD_ALLOW", Verdict::Allow, Some(false)),
            (3, "OBSERVE_WOULD_DENY_EXPLICIT", Verdict::Allow, Some(true)),
            (4, "OBSERVE_WOULD_DENY_DEFAULT", Verdict::Allow, Some(true)),
            (5, "ALLOW_EXPLICIT", Verdict::Allow, None),
            (6, "ALLOW_BROKER", Verdict::Allow, None),
            (7, "ALLOW_DNS", Verdict::Allow, None),
            (8, "DENY_EXPLICIT", Verdict::Deny, None),
            (9, "DENY_DEFAULT", Verdict::Deny, None),
            (10, "DENY_DEGRADED_FAIL_CLOSED", Verdict::Deny, None),
            (11, "ALLOW_DEGRADED_FAIL_OPEN", Verdict::Allow, None),
            (12, "DENY_SOCKET_CREATE", Verdict::Deny, None),
            (
                13,
                "OBSERVE_WOULD_DENY_SOCKET_CREATE",
                Verdict::Allow,
                Some(true),
            ),
            (14, "DENY_PACKET_EGRESS", Verdict::Deny, None),
            (
                15,
                "OBSERVE_WOULD_DENY_PACKET_EGRESS",
                Verdict::Allow,
                Some(true),
            ),
            (16, "DENY_DNS_QUERY", Verdict::Deny, None),
            (
                17,
                "OBSERVE_WOULD_DENY_DNS_QUERY",
                Verdict::Allow,
                Some(true),
            ),
        ];
        assert_eq!(DataplaneReasonCode::ALL.len(), published.len());
        for (value, wire, verdict, would_block) in published {
            let code = DataplaneReasonCode::from_wire(wire).expect(wire);
            assert_eq!(code.value(), value, "{wire}");
            assert_eq!(code.as_str(), wire);
            assert_eq!(code.verdict(), verdict, "{wire}");
            assert_eq!(code.would_block(), would_block, "{wire}");
            assert_eq!(DataplaneReasonCode::from_value(value), Some(code));
        }
        assert_eq!(DataplaneReasonCode::from_value(0), None);
        assert_eq!(DataplaneReasonCode::from_value(18), None);
    }

    #[test]
    fn control_values_are_the_published_ones() {
        let published = [
            (1, "CTRL_AUTH_PEERCRED_UNAVAILABLE"),
            (2, "CTRL_AUTH_PEERCRED_REJECTED_UID"),
            (3, "CTRL_AUTH_PEERCRED_REJECTED_GID"),
            (4, "CTRL_AUTH_SOCKET_MODE_INVALID"),
            (5, "CTRL_AUTH_SOCKET_OWNER_INVALID"),
            (6, "CTRL_REQUEST_MALFORMED"),
            (7, "CTRL_REQUEST_PAYLOAD_INVALID"),
            (8, "CTRL_COMMAND_FAILED"),
        ];
        assert_eq!(ControlAuthzCode::ALL.len(), published.len());
        for (value, wire) in published {
            let code = ControlAuthzCode::from_wire(wire).expect(wire);
            assert_eq!(code.value(), value, "{wire}");
            assert_eq!(ControlAuthzCode::from_value(value), Some(code));
        }
        assert_eq!(ControlAuthzCode::from_value(0), None);
    }

    #[test]
    fn wire_strings_are_case_sensitive_and_namespaced() {
        assert_eq!(DataplaneReasonCode::from_wire("deny_default"), None);
        assert_eq!(DataplaneReasonCode::from_wire("UNSPECIFIED"), None);
        assert_eq!(DataplaneReasonCode::from_wire("CTRL_COMMAND_FAILED"), None);
        assert_eq!(ControlAuthzCode::from_wire("DENY_DEFAULT"), None);
    }

    #[test]
    fn serde_uses_the_wire_strings() {
        let json = serde_json::to_string(&DataplaneReasonCode::AllowDns).unwrap();
        assert_eq!(json, "\"ALLOW_DNS\"");
        let back: ControlAuthzCode = serde_json::from_str("\"CTRL_REQUEST_MALFORMED\"").unwrap();
        assert_eq!(back, ControlAuthzCode::RequestMalformed);
        assert!(serde_json::from_str::<DataplaneReasonCode>("\"NOPE\"").is_err());
    }

    #[test]
    fn disjointness_check_detects_overlap() {
        assert!(reason_code_lists_are_disjoint());
        assert!(str_eq("A_B", "A_B"));
        assert!(!str_eq("A_B", "A_C"));
        assert!(!str_eq("A", "AB"));
    }
}
