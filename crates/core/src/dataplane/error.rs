//! Errors of the dataplane loader.

use std::path::PathBuf;

use super::layers::Layer;
use crate::contract::hook::Hook;

/// Everything that can go wrong loading, driving or reading the dataplane.
#[derive(thiserror::Error, Debug)]
pub enum DataplaneError {
    /// A file system operation on a cgroup, bpffs or procfs path failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No cgroup v2 hierarchy is mounted (looked up in /proc/self/mountinfo).
    #[error("no cgroup2 file system is mounted (see /proc/self/mountinfo)")]
    CgroupRootNotFound,
    /// The path is not a directory on a cgroup v2 file system.
    #[error("{path} is not a cgroup v2 directory")]
    NotCgroup2 { path: PathBuf },
    /// No bpffs is mounted and mounting one failed.
    #[error("no bpf file system is mounted and mounting one at /sys/fs/bpf failed: {reason}")]
    BpffsUnavailable { reason: String },
    /// The kernel rejected a program; `verifier_log` is the verifier's full output.
    #[error("the kernel rejected eBPF program {program}: {message}\n{verifier_log}")]
    Load {
        program: String,
        message: String,
        verifier_log: String,
    },
    /// The eBPF object could not be parsed or its maps created.
    #[error("cannot load the eBPF object: {0}")]
    Object(String),
    /// Attaching (or pinning the link of) a hook failed.
    #[error("cannot attach {}: {reason}", hook.as_str())]
    Attach { hook: Hook, reason: String },
    /// Pinning or unpinning a bypass layer failed after the kernel accepted it (a layer the kernel lacks is
    /// reported as unavailable in the status instead).
    #[error("layer {layer}: {reason}")]
    Layer { layer: Layer, reason: String },
    /// A map operation failed.
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
    /// The policy does not fit the kernel maps.
    #[error("policy too large: {what} ({count} > {limit})")]
    PolicyTooLarge {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    /// The policy cannot be represented by the dataplane (e.g. an id longer than the 64-byte id slot).
    #[error("policy not representable: {0}")]
    InvalidPolicy(String),
    /// The cgroup has no managed entry.
    #[error("cgroup {cgroup} is not managed")]
    NotManaged { cgroup: String },
    /// Not returned since every `subscribe()` gets its own stream of every event; kept so that code matching
    /// on it (and its error code) keeps compiling.
    #[error("the event stream is already subscribed")]
    AlreadySubscribed,
    /// `subscribe()` was called outside a tokio runtime, or the ring buffer cannot be polled.
    #[error("cannot start the event reader: {0}")]
    EventReader(String),
    /// The dataplane was closed.
    #[error("the dataplane is closed")]
    Closed,
    /// An option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
    /// A pinned state exists but is incomplete or not ours; nothing was changed.
    #[error("pinned state under {path} cannot be adopted: {reason}")]
    Adopt { path: PathBuf, reason: String },
}

impl DataplaneError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataplaneError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn map(map: &'static str, reason: impl std::fmt::Display) -> Self {
        DataplaneError::Map {
            map,
            reason: reason.to_string(),
        }
    }
}
