//! N-API glue. Every function here converts JavaScript values and forwards to plain Rust in `crate::contract`
//! or `crate::dataplane`; no rule lives here.

mod codes;
mod events;
mod issues;
