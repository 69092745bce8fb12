//! The dataplane: eBPF programs on the cgroup v2 sock_addr hooks (`bpf/`), the Aya loader that pins and adopts
//! them, the policy maps with atomic generation switches, and the ring-buffer event pipeline.
//! Semantics: SPEC section 4; design and limits: docs/dataplane.md.

mod abi;
mod adoption;
mod cgroup;
mod config_map;
mod error;
mod events;
mod fqdn;
mod group_maps;
mod layers;
mod loader;
mod mounts;
mod options;
mod pins;
mod policy_compile;
mod program;
mod slots;
mod sys;
mod verdict_counters;

pub use crate::contract::layer::{Layer, LayerCounters, LayerState, LayerStatus};
pub use crate::contract::policy::PolicySummary;
pub use crate::contract::verdict_counts::VerdictCount;
pub use cgroup::{cgroup_id, CgroupRef, ManagedCgroup};
pub use error::DataplaneError;
pub use events::{EventReceiver, VerdictEvent};
pub use fqdn::{DnsQueryVerdict, LearnedAddress, SteeredFlow, MIN_TTL_SECS};
pub use loader::{Dataplane, DataplaneStatus};
pub use mounts::{bpffs_root, cgroup2_root};
pub use options::{DataplaneOptions, FailMode, Mode};
pub use policy_compile::{
    MAX_ENDPOINT_ENTRIES, MAX_ENTRIES_PER_PREFIX, MAX_PREFIXES_PER_FAMILY, MAX_RULES,
    MAX_RULE_ENTRIES_PER_FAMILY,
};
