//! The two operating switches of the dataplane, shared by the control protocol, the loader and the Node API.

use serde::Serialize;

/// Enforcement mode of the global default or one cgroup: `enforce` refuses, `observe` only reports what
/// enforce would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Observe,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Enforce, Mode::Observe];

    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What enforce mode does while degraded (stale heartbeat or no policy loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Closed,
    Open,
}

impl FailMode {
    pub const ALL: [FailMode; 2] = [FailMode::Closed, FailMode::Open];

    pub const fn as_str(self) -> &'static str {
        match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        FailMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

crate::contract::wire_literal::wire_literal_from_all!(Mode, FailMode);
