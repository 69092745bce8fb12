//! Modes and load options: the contract's types (their rules live in [`crate::contract::load_options`]) and
//! their kernel encodings.

use super::abi;

pub use crate::contract::load_options::DataplaneOptions;
pub use crate::contract::modes::{FailMode, Mode};

// The kernel encodings of the shared modes live with the ABI they belong to.
impl Mode {
    pub(crate) const fn to_abi(self) -> u32 {
        match self {
            Mode::Enforce => abi::MODE_ENFORCE,
            Mode::Observe => abi::MODE_OBSERVE,
        }
    }
    /// `None` for DP_MODE_INHERIT (or an unknown value).
    pub(crate) const fn from_abi(v: u32) -> Option<Self> {
        match v {
            abi::MODE_ENFORCE => Some(Mode::Enforce),
            abi::MODE_OBSERVE => Some(Mode::Observe),
            _ => None,
        }
    }
}

impl FailMode {
    pub(crate) const fn to_abi(self) -> u32 {
        match self {
            FailMode::Closed => abi::FAIL_CLOSED,
            FailMode::Open => abi::FAIL_OPEN,
        }
    }
    pub(crate) const fn from_abi(v: u32) -> Self {
        if v == abi::FAIL_OPEN {
            FailMode::Open
        } else {
            FailMode::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for m in [Mode::Enforce, Mode::Observe] {
            assert_eq!(Mode::from_wire(m.as_str()), Some(m));
            assert_eq!(Mode::from_abi(m.to_abi()), Some(m));
        }
        assert_eq!(Mode::from_abi(abi::MODE_INHERIT), None);
        for f in [FailMode::Closed, FailMode::Open] {
            assert_eq!(FailMode::from_wire(f.as_str()), Some(f));
            assert_eq!(FailMode::from_abi(f.to_abi()), f);
        }
        assert_eq!(Mode::from_wire("Enforce"), None);
    }
}
