//! Canonical address and prefix text (`10.0.0.0/8`, `2001:db8::/32`), shared by the parser, the fast path
//! and every other entry point that names an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::IpNet;
use crate::contract::json_reader::Issues;
use crate::contract::validation::{IssueCode, PathSegment};

/// The IPv4 address inside `::ffff:0:0/96`, if `addr` is IPv4-mapped.
fn mapped_v4(addr: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    (s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff).then(|| {
        let o = addr.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// Parses canonical IP text: what `IpAddr`'s `Display` prints (dotted quad without leading zeros, RFC 5952
/// IPv6). IPv4-mapped IPv6 is refused because the dataplane judges mapped destinations as IPv4.
pub fn parse_canonical_ip(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<IpAddr> {
    let Ok(ip) = s.parse::<IpAddr>() else {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidFormat,
            format!("expected an IPv4 or IPv6 address, received `{s}`"),
        );
        return None;
    };
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = mapped_v4(&v6) {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidValue,
                format!(
                    "`{s}` is an IPv4-mapped IPv6 address; the dataplane matches IPv4-mapped destinations \
                     against IPv4 entries: write `{v4}`"
                ),
            );
            return None;
        }
    }
    let canonical = ip.to_string();
    if canonical != s {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidFormat,
            format!("`{s}` is not canonical IP text: write `{canonical}`"),
        );
        return None;
    }
    Some(ip)
}

/// Parses a canonical CIDR (`10.0.0.0/8`, `2001:db8::/32`): canonical address text, a decimal prefix length
/// within the family, host bits zero.
pub fn parse_canonical_cidr(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<IpNet> {
    let bad = |issues: &mut Issues, why: String| {
        issues.push(path.to_vec(), IssueCode::InvalidFormat, why);
        None
    };
    let Some((addr_text, len_text)) = s.split_once('/') else {
        return bad(
            issues,
            format!("expected a CIDR like `10.0.0.0/8` or `2001:db8::/32`, received `{s}`"),
        );
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return bad(
            issues,
            format!("`{s}`: `{addr_text}` is not an IPv4 or IPv6 address"),
        );
    };
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text.parse::<u8>() {
        Ok(n) if n <= max_len && n.to_string() == len_text => n,
        _ => {
            return bad(
                issues,
                format!("`{s}`: prefix length must be a decimal integer 0..={max_len} without leading zeros"),
            )
        }
    };
    let network = mask(addr, len);
    if let IpAddr::V6(v6) = addr {
        if len >= 96 {
            if let Some(v4) = mapped_v4(&v6) {
                let v4net = mask_v4(v4, len - 96);
                issues.push(
                    path.to_vec(),
                    IssueCode::InvalidValue,
                    format!(
                        "`{s}` is an IPv4-mapped IPv6 range; the dataplane judges IPv4-mapped destinations by \
                         the IPv4 rules: write the IPv4 rule `{v4net}/{}`",
                        len - 96
                    ),
                );
                return None;
            }
        }
    }
    let canonical = format!("{network}/{len}");
    if network != addr {
        issues.push(
            path.to_vec(),
            IssueCode::InvalidValue,
            format!("`{s}` has host bits set: write `{canonical}`"),
        );
        return None;
    }
    if canonical != s {
        return bad(
            issues,
            format!("`{s}` is not canonical CIDR text: write `{canonical}`"),
        );
    }
    Some(IpNet {
        addr: network,
        prefix_len: len,
    })
}

/// Zeroes the host bits of `addr` beyond `len`.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, len)),
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    Ipv4Addr::from(u32::from(a) & m)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_fixtures::{base, issues};
    use super::super::PolicySnapshot;

    #[test]
    fn host_bits_and_non_canonical_text_name_the_canonical_form() {
        let got = issues(base(json!([
            {"id": "a", "action": "allow", "cidr": "192.168.1.1/24"},
            {"id": "b", "action": "allow", "cidr": "2001:DB8::/32"},
            {"id": "c", "action": "allow", "cidr": "2001:db8:0:0::/64"},
            {"id": "d", "action": "allow", "cidr": "10.0.0.0/08"},
            {"id": "e", "action": "allow", "cidr": "10.0.0.0"},
            {"id": "f", "action": "allow", "cidr": "2001:db8::/129"}
        ])));
        assert_eq!(
            got[0].2,
            "`192.168.1.1/24` has host bits set: write `192.168.1.0/24`"
        );
        assert_eq!(
            got[1].2,
            "`2001:DB8::/32` is not canonical CIDR text: write `2001:db8::/32`"
        );
        assert_eq!(
            got[2].2,
            "`2001:db8:0:0::/64` is not canonical CIDR text: write `2001:db8::/64`"
        );
        assert!(got[3].2.contains("without leading zeros"));
        assert!(got[4].2.contains("expected a CIDR"));
        assert!(got[5].2.contains("0..=128"));
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn ipv4_mapped_ranges_point_to_the_ipv4_rule() {
        let got = issues(base(json!([
            {"id": "a", "action": "deny", "cidr": "::ffff:10.0.0.0/104"},
            {"id": "b", "action": "deny", "cidr": "::ffff:0:0/96"}
        ])));
        assert!(
            got[0].2.ends_with("write the IPv4 rule `10.0.0.0/8`"),
            "{}",
            got[0].2
        );
        assert!(
            got[1].2.ends_with("write the IPv4 rule `0.0.0.0/0`"),
            "{}",
            got[1].2
        );
        // A wider IPv6 range that merely contains the mapped block is an ordinary IPv6 rule.
        let ok = PolicySnapshot::from_json_value(&base(
            json!([{"id": "all6", "action": "deny", "cidr": "::/0"}]),
        ));
        assert!(ok.is_ok());
        let ep = issues(
            json!({"broker": [{"ip": "::ffff:10.0.0.5", "port": 8081}], "dns": [], "rules": []}),
        );
        assert!(ep[0].2.ends_with("write `10.0.0.5`"), "{}", ep[0].2);
    }
}
