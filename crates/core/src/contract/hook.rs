//! The four cgroup v2 hooks the dataplane attaches to, and the transport protocols it judges.
//! Numeric values are what the eBPF programs write into event records (`bpf/` includes them as constants).

/// A cgroup sock_addr hook.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Connect4 = 1,
    Connect6 = 2,
    Sendmsg4 = 3,
    Sendmsg6 = 4,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
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
            _ => None,
        }
    }
}

/// A transport protocol; the discriminant is the IANA protocol number the kernel reports. `Icmp` is an ICMP
/// ping socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`); an ICMPv6 ping socket is reported as `Icmp` too.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp = 6,
    Udp = 17,
    Icmp = 1,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];

    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
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
            _ => None,
        }
    }
}

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
    }

    #[test]
    fn protocols_use_iana_numbers() {
        assert_eq!(Protocol::Tcp as u8, 6);
        assert_eq!(Protocol::Udp as u8, 17);
        assert_eq!(Protocol::from_wire("TCP"), None);
        assert_eq!(Protocol::from_value(17), Some(Protocol::Udp));
        assert_eq!(Protocol::Icmp as u8, 1);
        assert_eq!(Protocol::from_wire("icmp"), Some(Protocol::Icmp));
        assert_eq!(
            Protocol::from_value(58),
            None,
            "ICMPv6 is folded into icmp by the programs"
        );
    }
}
