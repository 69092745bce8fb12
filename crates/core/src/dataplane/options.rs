//! Modes and load options.

use std::path::PathBuf;
use std::time::Duration;

use super::abi;
use super::error::DataplaneError;
use super::layers::Layer;

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

/// How [`super::Dataplane::load`] loads, attaches and pins.
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// Where the programs attach. `None`: the cgroup2 mount found in /proc/self/mountinfo.
    pub cgroup_root: Option<PathBuf>,
    /// `None`: `<bpffs mount>/broker-interceptor-ebpf` (bpffs is mounted at /sys/fs/bpf if missing).
    pub pin_dir: Option<PathBuf>,
    pub fail_mode: FailMode,
    pub heartbeat_grace: Duration,
    /// Ring buffer size: a power of two and a multiple of the page size.
    pub ring_buffer_bytes: u32,
    pub global_mode: Mode,
    /// Events the user-space queue holds before it drops (and counts) new ones.
    pub event_queue_capacity: usize,
    /// Period of the loader's own heartbeat timer.
    pub heartbeat_interval: Duration,
    /// Bypass layers not to attach (an adopted state drops their pinned links); the status reports them as
    /// disabled. For tests and for kernels where a layer misbehaves; `BROKER_EBPF_DISABLE_LAYERS` in the agent
    /// ([`Layer::parse_list`]).
    pub disable_layers: Vec<Layer>,
}

impl Default for DataplaneOptions {
    fn default() -> Self {
        DataplaneOptions {
            cgroup_root: None,
            pin_dir: None,
            fail_mode: FailMode::Closed,
            heartbeat_grace: Duration::from_secs(5),
            ring_buffer_bytes: 8 * 1024 * 1024,
            global_mode: Mode::Enforce,
            event_queue_capacity: 65_536,
            heartbeat_interval: Duration::from_secs(1),
            disable_layers: Vec::new(),
        }
    }
}

impl DataplaneOptions {
    pub(crate) fn validate(&self) -> Result<(), DataplaneError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        let rb = u64::from(self.ring_buffer_bytes);
        if !rb.is_power_of_two() || page == 0 || rb % page != 0 {
            return Err(DataplaneError::InvalidOption {
                name: "ring_buffer_bytes",
                reason: format!("{rb} is not a power of two multiple of the page size ({page})"),
            });
        }
        if self.event_queue_capacity == 0 {
            return Err(DataplaneError::InvalidOption {
                name: "event_queue_capacity",
                reason: "must be > 0".into(),
            });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(DataplaneError::InvalidOption {
                name: "heartbeat_interval",
                reason: "must be > 0".into(),
            });
        }
        if self.heartbeat_grace.is_zero() || self.heartbeat_grace.as_nanos() > u128::from(u64::MAX)
        {
            return Err(DataplaneError::InvalidOption {
                name: "heartbeat_grace",
                reason: "must be > 0 and fit in u64 nanoseconds".into(),
            });
        }
        Ok(())
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

    #[test]
    fn ring_buffer_size_must_be_a_power_of_two_of_pages() {
        let mut o = DataplaneOptions::default();
        assert!(o.validate().is_ok());
        o.ring_buffer_bytes = 3 * 4096;
        assert!(matches!(
            o.validate(),
            Err(DataplaneError::InvalidOption {
                name: "ring_buffer_bytes",
                ..
            })
        ));
        o.ring_buffer_bytes = 1024;
        assert!(o.validate().is_err());
    }
}
