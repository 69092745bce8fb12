//! DNS names of a policy snapshot (SPEC 4b): the canonical-form checks of `rules[].fqdn` and `broker[].fqdn`,
//! shared by the parser and the fast path; [`canonical_query_name`], the same label rules applied to a name a
//! workload asks for; and [`FqdnIndex`], which finds the rules and broker entries that name a queried name.
//!
//! Canonical form: labels of `a-z`, `0-9`, `_` and `-`, each 1..=63 bytes and neither starting nor ending with
//! `-`, at most 253 bytes in all, no trailing dot. An exact name has at least two labels; a pattern is `*.`
//! followed by such a name and matches a name of exactly one more label.

use std::collections::HashMap;

use super::{FqdnPattern, PolicySnapshot};
use crate::contract::json_reader::Issues;
use crate::contract::validation::{IssueCode, PathSegment};

/// The longest DNS name in text form, without the trailing dot (RFC 1035's 255 octets on the wire).
pub const MAX_NAME_BYTES: usize = 253;
/// The longest label (RFC 1035).
pub const MAX_LABEL_BYTES: usize = 63;

/// Where a name is written: a rule takes names and patterns, a broker entry only exact names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FqdnUse {
    Rule,
    Broker,
}

/// Why a name is not canonical: the issue code and message of [`check_name`].
type Refusal = (IssueCode, String);

/// Checks the labels of `name` (no `*`, no trailing dot, already lower case); `Err` says what is wrong.
fn check_labels(name: &str) -> Result<usize, String> {
    if name.is_empty() {
        return Err("a DNS name must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "is {} bytes long; a DNS name has at most {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    let mut count = 0;
    for label in name.split('.') {
        count += 1;
        if label.is_empty() {
            return Err("has an empty label (two dots in a row, or a leading dot)".to_owned());
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(format!(
                "label `{label}` is {} bytes long; a label has at most {MAX_LABEL_BYTES}",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(format!(
                "label `{label}` has `{c}`; a label is made of a-z, 0-9, `_` and `-`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    Ok(count)
}

/// The canonical form `s` was probably meant as (lower case, no trailing dot), if that form is valid.
fn suggestion(s: &str, use_: FqdnUse) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let fixed = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
    (fixed != s && check_name(&fixed, use_).is_ok()).then_some(fixed)
}

/// Checks one `fqdn` value; `Ok` is its canonical pattern.
pub(super) fn check_name(s: &str, use_: FqdnUse) -> Result<FqdnPattern, Refusal> {
    let format = |why: String| Err((IssueCode::InvalidFormat, format!("`{s}`: {why}")));
    if s.is_empty() {
        return Err((
            IssueCode::TooSmall,
            "expected a DNS name like `api.github.com`, received an empty string".to_owned(),
        ));
    }
    if s.ends_with('.') || s.bytes().any(|b| b.is_ascii_uppercase()) {
        let what = if s.ends_with('.') {
            "a name is written without the trailing dot"
        } else {
            "a name is written in lower case"
        };
        return match suggestion(s, use_) {
            Some(fixed) => format(format!("{what}; write `{fixed}`")),
            None => format(what.to_owned()),
        };
    }
    let (wildcard, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s == "*" {
        return Err((
            IssueCode::InvalidValue,
            "`*` alone would name every name; write a pattern like `*.github.com`".to_owned(),
        ));
    }
    if name.contains('*') {
        return format(
            "`*` is only allowed as the whole first label of a pattern, followed by a name of at least two \
             labels (`*.github.com`)"
                .to_owned(),
        );
    }
    if wildcard && use_ == FqdnUse::Broker {
        return Err((
            IssueCode::InvalidValue,
            format!("`{s}`: a broker is named by an exact name, not a pattern"),
        ));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err((
            IssueCode::TooBig,
            format!(
                "`{s}` is {} bytes long; a DNS name has at most {MAX_NAME_BYTES}",
                s.len()
            ),
        ));
    }
    let labels = match check_labels(name) {
        Ok(n) => n,
        Err(why) => return format(why),
    };
    if labels < 2 {
        return if wildcard {
            Err((
                IssueCode::InvalidValue,
                format!(
                    "`{s}` is too broad: a pattern needs a name of at least two labels after `*.` \
                     (`*.github.com`)"
                ),
            ))
        } else {
            format("an exact name has at least two labels (`api.github.com`)".to_owned())
        };
    }
    Ok(FqdnPattern::from_checked(s.to_owned()))
}

/// [`check_name`] reporting into `issues` at `path` (`rules[3].fqdn`).
pub(super) fn parse_fqdn(
    s: &str,
    use_: FqdnUse,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<FqdnPattern> {
    match check_name(s, use_) {
        Ok(p) => Some(p),
        Err((code, message)) => {
            issues.push(path.to_vec(), code, message);
            None
        }
    }
}

/// The canonical form of a name as a DNS query carries it (`API.GitHub.com.`): ASCII lower-cased, one trailing
/// dot stripped; `None` unless the result follows the label rules of policy names. Unlike a policy name, a
/// single label (`localhost`) is a valid query name.
pub fn canonical_query_name(wire: &str) -> Option<String> {
    let lower = wire.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    check_labels(name).ok()?;
    Some(name.to_owned())
}

/// What an [`FqdnIndex`] finds for a name: an index into `snapshot.rules` or into `snapshot.broker_names`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FqdnMatch {
    Rule(usize),
    Broker(usize),
}

/// The fqdn rules and broker names of one snapshot, by name: exact names in one map, `*.` patterns in another
/// keyed by their suffix (`github.com` for `*.github.com`), so a lookup is two hash probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FqdnIndex {
    exact: HashMap<String, Vec<FqdnMatch>>,
    wildcard: HashMap<String, Vec<FqdnMatch>>,
}

impl FqdnIndex {
    pub fn new(snapshot: &PolicySnapshot) -> Self {
        let mut index = FqdnIndex::default();
        let rules = snapshot
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.target.fqdn().map(|p| (p, FqdnMatch::Rule(i))));
        let brokers = snapshot
            .broker_names
            .iter()
            .enumerate()
            .map(|(i, b)| (&b.fqdn, FqdnMatch::Broker(i)));
        for (pattern, m) in rules.chain(brokers) {
            let (map, key) = match pattern.wildcard_suffix() {
                Some(suffix) => (&mut index.wildcard, suffix),
                None => (&mut index.exact, pattern.as_str()),
            };
            map.entry(key.to_owned()).or_default().push(m);
        }
        index
    }

    /// The rules and broker entries that name `name` (canonical, as [`canonical_query_name`] gives it): those
    /// naming it exactly first, then those whose pattern matches it; each group in snapshot order, rules
    /// before broker entries.
    pub fn matches(&self, name: &str) -> impl Iterator<Item = FqdnMatch> + '_ {
        let exact = self.exact.get(name).map_or(&[][..], Vec::as_slice);
        let wildcard = match name.split_once('.') {
            Some((first, suffix)) if !first.is_empty() => {
                self.wildcard.get(suffix).map_or(&[][..], Vec::as_slice)
            }
            _ => &[][..],
        };
        exact.iter().chain(wildcard).copied()
    }

    /// Whether any rule or broker entry names `name` (what `dnsQueries: "policy"` lets through).
    pub fn names(&self, name: &str) -> bool {
        self.matches(name).next().is_some()
    }

    /// True when the snapshot has no fqdn rule and no broker name.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(s: &str, use_: FqdnUse) -> String {
        check_name(s, use_).expect_err(s).1
    }

    #[test]
    fn canonical_names_and_patterns_are_accepted() {
        for s in [
            "api.github.com",
            "a.b",
            "_dmarc.example.com",
            "x-1.example-2.com",
            "*.github.com",
            "*.a.b",
        ] {
            assert_eq!(
                check_name(s, FqdnUse::Rule).map(|p| p.to_string()),
                Ok(s.to_owned())
            );
        }
        let longest_label = format!("{}.com", "a".repeat(63));
        assert!(check_name(&longest_label, FqdnUse::Rule).is_ok());
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long.len(), 253);
        assert!(check_name(&long, FqdnUse::Rule).is_ok());
        assert_eq!(
            check_name(&format!("{long}e"), FqdnUse::Rule)
                .unwrap_err()
                .0,
            IssueCode::TooBig
        );
    }

    #[test]
    fn non_canonical_names_are_refused_with_the_fix() {
        let cases = [
            ("api.github.com.", "write `api.github.com`"),
            ("API.GitHub.com", "lower case; write `api.github.com`"),
            ("Api.github.com.", "write `api.github.com`"),
            ("*.GitHub.com", "write `*.github.com`"),
            ("localhost", "at least two labels"),
            ("a..b", "empty label"),
            (".a.b", "empty label"),
            ("-a.com", "starts or ends with `-`"),
            ("a-.com", "starts or ends with `-`"),
            ("a b.com", "has ` `"),
            ("é.com", "has `é`"),
            ("*.com", "too broad"),
            ("*", "`*` alone"),
            ("**.x.y", "whole first label"),
            ("*foo.x.y", "whole first label"),
            ("a.*.x.y", "whole first label"),
            ("*.*.x.y", "whole first label"),
            // Its fix without the dot, `*`, is not a valid pattern either: no `write`.
            ("*.", "without the trailing dot"),
        ];
        for (s, want) in cases {
            let got = refused(s, FqdnUse::Rule);
            assert!(got.contains(want), "{s}: {got}");
        }
        assert!(!refused("*.", FqdnUse::Rule).contains("write"));
        assert_eq!(
            check_name(&format!("{}.com", "a".repeat(64)), FqdnUse::Rule)
                .unwrap_err()
                .0,
            IssueCode::InvalidFormat
        );
        assert_eq!(
            check_name("", FqdnUse::Rule).unwrap_err().0,
            IssueCode::TooSmall
        );
    }

    #[test]
    fn a_broker_is_named_by_an_exact_name() {
        assert!(check_name("broker.internal", FqdnUse::Broker).is_ok());
        assert!(refused("*.internal.example", FqdnUse::Broker)
            .contains("a broker is named by an exact name"));
        assert!(refused("broker", FqdnUse::Broker).contains("at least two labels"));
    }

    #[test]
    fn query_names_are_lower_cased_and_may_be_one_label() {
        assert_eq!(
            canonical_query_name("API.GitHub.com."),
            Some("api.github.com".to_owned())
        );
        assert_eq!(
            canonical_query_name("localhost"),
            Some("localhost".to_owned())
        );
        assert_eq!(
            canonical_query_name("localhost."),
            Some("localhost".to_owned())
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a.b..",
            "*.github.com",
            "-a.com",
            "a b",
            "é.com",
        ] {
            assert_eq!(canonical_query_name(bad), None, "{bad:?}");
        }
        assert_eq!(canonical_query_name(&"a".repeat(64)), None);
    }

    fn snapshot() -> PolicySnapshot {
        PolicySnapshot::from_json_value(&json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}, {"fqdn": "broker.internal", "port": 8081},
                       {"fqdn": "api.github.com", "port": 9000}],
            "dns": [],
            "rules": [
                {"id": "net", "action": "allow", "cidr": "10.0.0.0/8"},
                {"id": "gh", "action": "allow", "fqdn": "*.github.com"},
                {"id": "api", "action": "deny", "fqdn": "api.github.com", "ports": [80]},
                {"id": "gh2", "action": "deny", "fqdn": "*.github.com", "protocol": "udp"}
            ]
        }))
        .expect("valid")
    }

    #[test]
    fn the_index_finds_exact_names_then_patterns() {
        let s = snapshot();
        let index = FqdnIndex::new(&s);
        assert!(!index.is_empty());
        let m: Vec<FqdnMatch> = index.matches("api.github.com").collect();
        assert_eq!(
            m,
            [
                FqdnMatch::Rule(2),
                FqdnMatch::Broker(1),
                FqdnMatch::Rule(1),
                FqdnMatch::Rule(3)
            ]
        );
        assert_eq!(
            index.matches("broker.internal").collect::<Vec<_>>(),
            [FqdnMatch::Broker(0)]
        );
        assert_eq!(
            index.matches("www.github.com").collect::<Vec<_>>(),
            [FqdnMatch::Rule(1), FqdnMatch::Rule(3)]
        );
        // A pattern matches exactly one more label.
        assert!(index.names("api.github.com"));
        assert!(!index.names("github.com"));
        assert!(!index.names("a.b.github.com"));
        assert!(!index.names(".github.com"));
        assert!(!index.names("internal"));
        assert!(!index.names("10.0.0.0/8"));
        for m in index.matches("x.github.com") {
            if let FqdnMatch::Rule(i) = m {
                assert!(s.rules[i]
                    .target
                    .fqdn()
                    .is_some_and(|p| p.matches("x.github.com")));
            }
        }
    }

    #[test]
    fn an_index_without_names_is_empty() {
        let s = PolicySnapshot::from_json_value(&json!({
            "broker": [{"ip": "10.0.0.5", "port": 8081}], "dns": [],
            "rules": [{"id": "net", "action": "allow", "cidr": "10.0.0.0/8"}]
        }))
        .expect("valid");
        let index = FqdnIndex::new(&s);
        assert!(index.is_empty());
        assert!(!index.names("api.github.com"));
    }
}
