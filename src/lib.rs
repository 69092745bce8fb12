//! The Node.js addon of `@broker-interceptor/interceptor-ebpf`: N-API glue only. Every function converts
//! JavaScript values, makes one call into `interceptor_ebpf_core` (the contract layer and the dataplane) and
//! shapes the result; no rule, limit or list lives here.

// In unit-test builds napi-derive does not register #[napi] items, so the glue looks unused there.
#![cfg_attr(test, allow(dead_code))]

mod codes;
mod control;
mod control_client;
#[cfg(target_os = "linux")]
mod event_batch;
#[cfg(target_os = "linux")]
mod interceptor;
mod issues;
mod napi_raw;
mod packet_event;
mod utf16;
