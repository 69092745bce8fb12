//! `interceptor-ebpf`: the agent daemon and its control client, on `interceptor-ebpf-core` without N-API or
//! Node (the binary goes into the agent image alone).
//!
//! - [`daemon`]: `interceptor-ebpf agent`: the authenticated control socket, heartbeat and degraded modes,
//!   the event pipeline to standard output and subscribers, Prometheus metrics.
//! - [`ctl`]: `interceptor-ebpf ctl`: the operator's client; [`client`] is its blocking protocol client, also
//!   used by the tests and the benchmark; [`policy_diff`] is what `ctl policy diff` compares.
//! - [`config`], [`cgroups`], [`events`]: configuration from flags and environment, payload cgroup paths, and
//!   verdicts as contract events.

pub mod cgroups;
pub mod cli;
pub mod client;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod exit;
pub mod policy_diff;
