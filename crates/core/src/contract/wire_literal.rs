//! Closed lists of wire strings (hooks, protocols, modes, reason codes, commands, ...) as literal sets.
//!
//! Each list is written once, as its type's `ALL` and `as_str`; [`WireLiteral`] exposes that one list to the
//! readers ([`crate::contract::json_reader::literal`]) and to every "expected one of ..." message
//! ([`alternatives`]), so no parser keeps a `(&str, T)` table or a hand-spelled message of its own, and a value
//! appended to a list (a new hook, protocol or reason code) is accepted and named everywhere at once.
//!
//! A leaf: each type implements the trait in its own module (`wire_literal_from_all!(Hook, Protocol)` in
//! `hook.rs`), so this module depends on none of them.

/// A type whose values are exactly the strings of one closed list.
pub trait WireLiteral: Copy + 'static {
    /// Every value, in the list's order.
    const VALUES: &'static [Self];

    /// The value's wire string.
    fn wire(self) -> &'static str;

    /// The value whose wire string is exactly `s`.
    fn from_wire_literal(s: &str) -> Option<Self> {
        Self::VALUES.iter().copied().find(|v| v.wire() == s)
    }
}

/// Every wire string of `T`, each passed through `quote`, joined with `separator`: `alternatives::<Mode>(
/// |s| format!("`{s}`"), " | ")` is ``"`enforce` | `observe`"``.
pub fn alternatives<T: WireLiteral>(quote: impl Fn(&str) -> String, separator: &str) -> String {
    T::VALUES
        .iter()
        .map(|v| quote(v.wire()))
        .collect::<Vec<_>>()
        .join(separator)
}

/// Implements [`WireLiteral`] from a type's own `ALL` list and `as_str`.
macro_rules! wire_literal_from_all {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::contract::wire_literal::WireLiteral for $t {
            const VALUES: &'static [Self] = &<$t>::ALL;
            fn wire(self) -> &'static str {
                <$t>::as_str(self)
            }
        }
    )+};
}
pub(crate) use wire_literal_from_all;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::hook::{Hook, Protocol};
    use crate::contract::layer::{Layer, LayerStateName};
    use crate::contract::modes::{FailMode, Mode};
    use crate::contract::reason_codes::Verdict;

    #[test]
    fn every_list_round_trips_and_names_every_value() {
        fn check<T: WireLiteral + PartialEq + std::fmt::Debug>() {
            for v in T::VALUES {
                assert_eq!(T::from_wire_literal(v.wire()), Some(*v));
            }
            assert_eq!(T::from_wire_literal(""), None);
            let listed = alternatives::<T>(|s| s.to_owned(), ",");
            assert_eq!(listed.split(',').count(), T::VALUES.len());
        }
        check::<Hook>();
        check::<Protocol>();
        check::<Mode>();
        check::<FailMode>();
        check::<Verdict>();
        check::<Layer>();
        check::<LayerStateName>();
        assert_eq!(
            alternatives::<Mode>(|s| format!("`{s}`"), " | "),
            "`enforce` | `observe`"
        );
    }
}
