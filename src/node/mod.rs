//! N-API glue. Every function here converts JavaScript values and forwards to plain Rust in `crate::contract`
//! or `crate::dataplane`; no rule lives here.

mod codes;
// `#[napi]` items are only reachable through napi's registration, which test builds leave out.
#[cfg_attr(test, allow(dead_code))]
mod event_batch;
#[cfg_attr(test, allow(dead_code))]
mod interceptor;
mod interceptor_options;
mod issues;
