//! The core of interceptor-ebpf, with no N-API in it: the Node addon (the workspace root) and the agent binary
//! both build on this crate, and `cargo test -p interceptor-ebpf-core` exercises it without Node.
//!
//! - [`contract`]: reason codes, strict wire parsers, log records, configuration and control-socket checks.
//! - [`dataplane`]: the eBPF programs (built from `bpf/`), the Aya loader, policy maps and verdict events.

pub mod contract;
// The dataplane is Linux-only (cgroup v2, BPF, Aya); the contract layer builds everywhere, WebAssembly included.
#[cfg(target_os = "linux")]
pub mod dataplane;
