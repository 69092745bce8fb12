//! `@broker-interceptor/interceptor-ebpf`: the kernel backstop of the broker platform.
//!
//! - [`contract`]: reason codes, strict wire parsers, log records, configuration and control-socket checks.
//! - `node`: the N-API glue that exposes the contract (and the dataplane) to JavaScript; no rule lives there.

pub mod contract;
pub mod dataplane;
mod node;
