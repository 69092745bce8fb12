//! Canonical IP text (SPEC 3, "canonical IPv4 or IPv6 text"): the one parser every field that names an
//! address goes through (event `dst_ip`, policy broker and DNS endpoints, and through them the fast paths).
//!
//! Canonical means exactly what `IpAddr`'s `Display` prints: a dotted quad without leading zeros, and RFC 5952
//! IPv6 (lower case, longest zero run compressed, `::ffff:a.b.c.d` for IPv4-mapped addresses). Anything else
//! that denotes an address (`010.0.0.1` is refused by std already; `2001:DB8::1`, `0:0::1`, `::ffff:a00:1`) is
//! refused with a message naming the canonical form, so a text and its address are one-to-one and logs,
//! dedup keys and policies never disagree about which address a string means.
//!
//! IPv4-mapped addresses are canonical IP text (`::ffff:10.0.0.1`): an event reports the destination as the
//! caller wrote it, and a caller may well connect to a mapped address on an IPv6 socket. Whether a *policy*
//! may name one is a separate rule of the policy ([`crate::contract::policy`] refuses mapped endpoints and
//! CIDRs, because the dataplane judges mapped destinations by the IPv4 entries; it tests with std's
//! `Ipv6Addr::to_ipv4_mapped`).

use std::net::IpAddr;

use super::validation::quoted;

/// A fixed buffer `IpAddr`'s `Display` writes into, so the canonical check does not allocate.
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// True when `ip` prints exactly as `s`.
fn prints_as(ip: &IpAddr, s: &str) -> bool {
    use std::fmt::Write;
    let mut t = IpText {
        buf: [0; 64],
        len: 0,
    };
    write!(t, "{ip}").is_ok() && &t.buf[..t.len] == s.as_bytes()
}

/// Parses canonical IPv4 or IPv6 text (see the module documentation). The error is the issue message: it names
/// the canonical form when `s` denotes an address in another spelling. Allocates only on failure.
pub fn parse_canonical_ip(s: &str) -> Result<IpAddr, String> {
    let Ok(ip) = s.parse::<IpAddr>() else {
        return Err(format!(
            "expected an IPv4 or IPv6 address, received {}",
            quoted(s)
        ));
    };
    // std's IPv4 parser accepts only the canonical dotted quad (no leading zeros, no short forms), so only IPv6
    // needs the print-back comparison; `tests/events_props.rs` checks that claim.
    if ip.is_ipv4() || prints_as(&ip, s) {
        return Ok(ip);
    }
    Err(format!(
        "must be canonical IP text: write {} instead of {}",
        quoted(&ip.to_string()),
        quoted(s)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_only_and_the_message_names_the_canonical_form() {
        for ok in [
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fe80::1:2",
        ] {
            assert_eq!(
                parse_canonical_ip(ok).map(|ip| ip.to_string()),
                Ok(ok.to_owned())
            );
        }
        for bad in ["010.0.0.1", "10.0.0", "fe80::1%eth0", " 10.0.0.1", ""] {
            let e = parse_canonical_ip(bad).expect_err(bad);
            assert!(e.starts_with("expected an IPv4 or IPv6 address"), "{e}");
        }
        assert_eq!(
            parse_canonical_ip("::FFFF:10.0.0.1"),
            Err("must be canonical IP text: write \"::ffff:10.0.0.1\" instead of \"::FFFF:10.0.0.1\"".to_owned())
        );
        assert!(parse_canonical_ip("::ffff:a00:1").is_err());
        assert!(parse_canonical_ip("2001:db8:0:0:0:0:0:1").is_err());
    }
}
