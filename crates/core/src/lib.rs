//! The core of interceptor-ebpf, with no N-API in it: the Node addon (the workspace root) and the agent binary
//! both build on this crate, and `cargo test -p interceptor-ebpf-core` exercises it without Node.
//!
//! - [`contract`]: reason codes, strict wire parsers, log records, configuration and control-socket checks.
//! - [`dataplane`]: the eBPF programs (built from `bpf/`), the Aya loader, policy maps and verdict events.

pub mod contract;
pub mod dataplane;
