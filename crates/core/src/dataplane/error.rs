//! Errors of the dataplane loader.
//!
//! Every variant's `Display` is the complete one-line message, its causes included (the agent logs
//! `to_string()`, the Node API sends it as `message`), so a printer should not append the `source()` chain
//! again; `source()` keeps the typed cause (an aya error, an `io::Error`) for callers that inspect it.
//! [`DataplaneError::code`] is the stable category JavaScript sees as `error.code`.

use std::path::PathBuf;

use crate::contract::hook::Hook;
use crate::contract::layer::Layer;
use crate::contract::validation::ValidationError;

/// A cause kept as the error's `source()`: an aya error, an `io::Error`, or a message where none exists.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong loading, driving or reading the dataplane.
#[derive(thiserror::Error, Debug)]
#[cfg_attr(not(test), non_exhaustive)]
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
    /// The kernel refused to load a program. `source` is the syscall's error (or aya's, when the load failed
    /// before the kernel saw the program); `verifier_log` is the verifier's full output, kept out of the
    /// message because it runs to thousands of lines (the Node API hands it over as `verifierLog`).
    #[error("the kernel rejected eBPF program {program}: {}", chain(source.as_ref()))]
    Load {
        program: String,
        #[source]
        source: Cause,
        verifier_log: String,
    },
    /// The eBPF object could not be parsed or its maps created, or it lacks a program this loader needs.
    #[error("cannot load the eBPF object: {}", chain(.0.as_ref()))]
    Object(#[source] Cause),
    /// Attaching a hook, or pinning or unpinning its program or link, failed at `step`.
    #[error("cannot attach {} ({step}): {}", hook.as_str(), chain(source.as_ref()))]
    Attach {
        hook: Hook,
        step: String,
        #[source]
        source: Cause,
    },
    /// Pinning or unpinning a bypass layer failed after the kernel accepted it (a layer the kernel lacks is
    /// reported as unavailable in the status instead), at `step`.
    #[error("layer {layer} ({step}): {}", chain(source.as_ref()))]
    Layer {
        layer: Layer,
        step: String,
        #[source]
        source: Cause,
    },
    /// A map operation failed.
    #[error("map {map}: {}", chain(source.as_ref()))]
    Map {
        map: &'static str,
        #[source]
        source: Cause,
    },
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
    /// The target is the root cgroup of the hierarchy, which the contract's root rule refuses unless allowed
    /// ([`crate::contract::cgroup::refuse_root`]).
    #[error("cgroup {cgroup} is refused: {reason}")]
    CgroupRootRefused { cgroup: String, reason: String },
    /// Not returned since every `subscribe()` gets its own stream of every event; kept so that code matching
    /// on it (and its error code) keeps compiling.
    #[error("the event stream is already subscribed")]
    AlreadySubscribed,
    /// `subscribe()` was called outside a tokio runtime, or the ring buffer cannot be polled.
    #[error("cannot start the event reader: {}", chain(.0.as_ref()))]
    EventReader(#[source] Cause),
    /// The dataplane was closed.
    #[error("the dataplane is closed")]
    Closed,
    /// Options or arguments break a contract rule. The Node API and the agent check them first and report the
    /// issues in their own shape; a Rust caller that builds them by hand gets the same issues here.
    #[error("invalid option: {0}")]
    InvalidOption(#[source] ValidationError),
    /// A pinned state exists but is incomplete or not ours; nothing was changed.
    #[error("pinned state under {path} cannot be adopted: {reason}")]
    Adopt { path: PathBuf, reason: String },
}

impl DataplaneError {
    /// The stable code of this error's kind, `ERR_DATAPLANE_<KIND>`: what JavaScript sees as `error.code`
    /// (docs/node-api.md lists them). An explicit match, so a code never changes when a variant is renamed,
    /// and a new variant does not compile until it has one.
    pub const fn code(&self) -> &'static str {
        match self {
            DataplaneError::Io { .. } => "ERR_DATAPLANE_IO",
            DataplaneError::CgroupRootNotFound => "ERR_DATAPLANE_CGROUP_ROOT_NOT_FOUND",
            DataplaneError::NotCgroup2 { .. } => "ERR_DATAPLANE_NOT_CGROUP2",
            DataplaneError::BpffsUnavailable { .. } => "ERR_DATAPLANE_BPFFS_UNAVAILABLE",
            DataplaneError::Load { .. } => "ERR_DATAPLANE_LOAD",
            DataplaneError::Object(_) => "ERR_DATAPLANE_OBJECT",
            DataplaneError::Attach { .. } => "ERR_DATAPLANE_ATTACH",
            DataplaneError::Layer { .. } => "ERR_DATAPLANE_LAYER",
            DataplaneError::Map { .. } => "ERR_DATAPLANE_MAP",
            DataplaneError::PolicyTooLarge { .. } => "ERR_DATAPLANE_POLICY_TOO_LARGE",
            DataplaneError::InvalidPolicy(_) => "ERR_DATAPLANE_INVALID_POLICY",
            DataplaneError::NotManaged { .. } => "ERR_DATAPLANE_NOT_MANAGED",
            DataplaneError::CgroupRootRefused { .. } => "ERR_DATAPLANE_CGROUP_ROOT_REFUSED",
            DataplaneError::AlreadySubscribed => "ERR_DATAPLANE_ALREADY_SUBSCRIBED",
            DataplaneError::EventReader(_) => "ERR_DATAPLANE_EVENT_READER",
            DataplaneError::Closed => "ERR_DATAPLANE_CLOSED",
            DataplaneError::InvalidOption(_) => "ERR_DATAPLANE_INVALID_OPTION",
            DataplaneError::Adopt { .. } => "ERR_DATAPLANE_ADOPT",
        }
    }

    /// The verifier's output of a [`DataplaneError::Load`] (empty when the kernel gave none).
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            DataplaneError::Load { verifier_log, .. } => Some(verifier_log),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataplaneError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A map error: `cause` is the aya `MapError` (or `io::Error`) itself, or a message.
    pub(crate) fn map(map: &'static str, cause: impl Into<Cause>) -> Self {
        DataplaneError::Map {
            map,
            source: cause.into(),
        }
    }

    pub(crate) fn layer(layer: Layer, step: impl Into<String>, cause: impl Into<Cause>) -> Self {
        DataplaneError::Layer {
            layer,
            step: step.into(),
            source: cause.into(),
        }
    }

    pub(crate) fn attach(hook: Hook, step: impl Into<String>, cause: impl Into<Cause>) -> Self {
        DataplaneError::Attach {
            hook,
            step: step.into(),
            source: cause.into(),
        }
    }
}

/// An error and its causes on one line: aya keeps the errno in a nested source.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        // Some aya errors already print their source; do not repeat it.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_published_strings() {
        let io = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let cases: Vec<(DataplaneError, &str)> = vec![
            (DataplaneError::io("stat", "/x", io()), "ERR_DATAPLANE_IO"),
            (DataplaneError::Closed, "ERR_DATAPLANE_CLOSED"),
            (
                DataplaneError::AlreadySubscribed,
                "ERR_DATAPLANE_ALREADY_SUBSCRIBED",
            ),
            (
                DataplaneError::NotCgroup2 { path: "/x".into() },
                "ERR_DATAPLANE_NOT_CGROUP2",
            ),
            (
                DataplaneError::map("dp_managed", "gone"),
                "ERR_DATAPLANE_MAP",
            ),
            (
                DataplaneError::layer(Layer::Egress, "pin link", "gone"),
                "ERR_DATAPLANE_LAYER",
            ),
            (
                DataplaneError::NotManaged {
                    cgroup: "id 7".into(),
                },
                "ERR_DATAPLANE_NOT_MANAGED",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
        }
    }

    #[test]
    fn the_cause_is_kept_as_source_and_shown_once() {
        let e = DataplaneError::io(
            "stat",
            "/x",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        let shown = e.to_string();
        assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
        let source = std::error::Error::source(&e).expect("source");
        assert_eq!(
            source
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn the_verifier_log_stays_out_of_the_message() {
        let e = DataplaneError::Load {
            program: "dp_connect4".into(),
            source: Box::new(std::io::Error::from_raw_os_error(libc::EACCES)),
            verifier_log: "0: R1=ctx\nR0 !read_ok".into(),
        };
        assert!(!e.to_string().contains("R0"), "{e}");
        assert_eq!(e.verifier_log(), Some("0: R1=ctx\nR0 !read_ok"));
        assert_eq!(e.code(), "ERR_DATAPLANE_LOAD");
    }
}
