//! The contract layer (SPEC sections 2 and 3): everything other parts and other processes agree on.

pub mod cgroup;
pub mod config;
pub mod control;
pub mod events;
pub mod heartbeat;
pub mod hook;
pub mod ip_text;
pub mod json_reader;
pub mod layer;
pub mod load_options;
pub mod modes;
pub mod policy;
pub mod reason_codes;
pub mod slot_id;
pub mod timestamp;
pub mod validation;
pub mod verdict_counts;
pub mod wire_literal;
