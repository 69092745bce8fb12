//! The hooks the dataplane judges at, and the transports it reports. Numeric values are what the eBPF programs
//! write into event records (`bpf/dataplane_abi.h` has them as `DP_HOOK_*`/`DP_PROTO_*`, checked against this
//! file at compile time). Both lists only grow: names and values are never changed or reused (SPEC 2).

/// Where a verdict was made: one of the four cgroup v2 sock_addr hooks, or one of the bypass layers
/// (docs/threat-model.md).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Connect4 = 1,
    Connect6 = 2,
    Sendmsg4 = 3,
    Sendmsg6 = 4,
    /// `cgroup/sock_create`: an IPv4/IPv6 socket being created (raw sockets and other kinds the sock_addr hooks
    /// cannot judge are refused here).
    SockCreate = 5,
    /// `lsm_cgroup/socket_create`: a socket of any family being created (packet and XDP sockets are refused
    /// here); needs BPF LSM.
    SocketCreateLsm = 6,
    /// `cgroup_skb/egress`: an IP packet leaving a socket of a managed cgroup (the packet-level backstop).
    Egress = 7,
    /// The agent's DNS proxy (SPEC 4b): a query refused, or one observe mode would refuse, under
    /// `dnsQueries: "policy"`. Judged in user space only: no eBPF program reports it.
    Dns = 8,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::SockCreate,
        Hook::SocketCreateLsm,
        Hook::Egress,
        Hook::Dns,
    ];

    /// The four cgroup v2 sock_addr hooks that judge `connect()` and UDP `sendmsg()` (`attachedHooks`).
    pub const SOCK_ADDR: [Hook; 4] = [
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::SockCreate => "sock_create",
            Hook::SocketCreateLsm => "socket_create_lsm",
            Hook::Egress => "egress",
            Hook::Dns => "dns",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }

    pub const fn from_value(v: u8) -> Option<Self> {
        match v {
            1 => Some(Hook::Connect4),
            2 => Some(Hook::Connect6),
            3 => Some(Hook::Sendmsg4),
            4 => Some(Hook::Sendmsg6),
            5 => Some(Hook::SockCreate),
            6 => Some(Hook::SocketCreateLsm),
            7 => Some(Hook::Egress),
            8 => Some(Hook::Dns),
            _ => None,
        }
    }
}

/// A transport. For IP protocols the discriminant is the IANA protocol number the kernel reports (ICMPv6 is
/// reported as `icmp`); the socket kinds that carry no judged IP protocol use values from the top of the
/// range, which no judged packet carries: `raw` is IPPROTO_RAW (255), `packet` 254 and `xdp` 253.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp = 6,
    Udp = 17,
    /// ICMP or ICMPv6 (ping sockets).
    Icmp = 1,
    /// UDP-Lite (RFC 3828), judged like UDP by the sock_addr hooks.
    Udplite = 136,
    /// A raw IP socket, a socket of an IP protocol the sock_addr hooks cannot judge (e.g. SCTP), or, at the
    /// egress hook, a packet whose IP protocol is none of the above (only such sockets build those).
    Raw = 255,
    /// An `AF_PACKET` socket (link-layer frames).
    Packet = 254,
    /// An `AF_XDP` socket (link-layer frames to a device queue).
    Xdp = 253,
}

impl Protocol {
    pub const ALL: [Protocol; 7] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Udplite,
        Protocol::Raw,
        Protocol::Packet,
        Protocol::Xdp,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Udplite => "udplite",
            Protocol::Raw => "raw",
            Protocol::Packet => "packet",
            Protocol::Xdp => "xdp",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub const fn from_value(v: u8) -> Option<Self> {
        match v {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            1 => Some(Protocol::Icmp),
            136 => Some(Protocol::Udplite),
            255 => Some(Protocol::Raw),
            254 => Some(Protocol::Packet),
            253 => Some(Protocol::Xdp),
            _ => None,
        }
    }
}

crate::contract::wire_literal::wire_literal_from_all!(Hook, Protocol);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_round_trip_through_wire_and_value() {
        for h in Hook::ALL {
            assert_eq!(Hook::from_wire(h.as_str()), Some(h));
            assert_eq!(Hook::from_value(h as u8), Some(h));
        }
        assert_eq!(Hook::from_wire("bind4"), None);
        assert_eq!(Hook::from_value(0), None);
        assert_eq!(Hook::from_value(8), Some(Hook::Dns));
        assert_eq!(Hook::from_value(9), None);
        // Values are dense from 1, in declaration order: appended, never renumbered.
        for (i, h) in Hook::ALL.iter().enumerate() {
            assert_eq!(*h as usize, i + 1);
        }
        assert!(Hook::SOCK_ADDR.iter().all(|h| (*h as u8) <= 4));
    }

    #[test]
    fn protocols_use_iana_numbers() {
        assert_eq!(Protocol::Tcp as u8, 6);
        assert_eq!(Protocol::Udp as u8, 17);
        assert_eq!(Protocol::Icmp as u8, 1);
        assert_eq!(Protocol::Udplite as u8, 136);
        assert_eq!(Protocol::Raw as u8, 255, "IPPROTO_RAW");
        assert_eq!(Protocol::from_wire("TCP"), None);
        assert_eq!(Protocol::from_value(17), Some(Protocol::Udp));
        assert_eq!(
            Protocol::from_value(58),
            None,
            "ICMPv6 is written as icmp by the programs"
        );
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_wire(p.as_str()), Some(p));
            assert_eq!(Protocol::from_value(p as u8), Some(p));
        }
    }
}
