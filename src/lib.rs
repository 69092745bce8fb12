//! `@broker-interceptor/interceptor-ebpf`: the kernel backstop of the broker platform.
//!
//! - [`contract`]: reason codes, strict wire parsers, log records, configuration and control-socket checks.
//! - [`dataplane`]: the eBPF programs (built from `bpf/`), the Aya loader, policy maps and verdict events.
//! - `node`: the N-API glue that exposes the contract and the dataplane to JavaScript; no rule lives there.

pub mod contract;
pub mod dataplane;
// In unit-test builds napi-derive does not register #[napi] items, so the glue looks unused there.
#[cfg_attr(test, allow(dead_code))]
mod node;
