//! N-API glue. Every function here converts JavaScript values and forwards to plain Rust in `crate::contract`
//! or `crate::dataplane`; no rule lives here.

mod codes;
mod control;
mod event_batch;
mod events;
mod interceptor;
mod interceptor_options;
mod issues;
