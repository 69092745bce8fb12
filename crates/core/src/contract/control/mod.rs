//! The control plane's contract: what the agent's Unix socket and its clients agree on.
//!
//! - [`protocol`]: the control protocol (SPEC 3), one JSON object per line: envelope, typed requests and
//!   responses, their strict parsers and serializers;
//! - [`client`]: what a controller accepts as the reply to one of its requests (the agent's `ctl` and the
//!   Node API's `ControlClient`);
//! - [`authz`]: ControlPlaneAuthzEvent, why the control plane refused a connection or a request;
//! - [`peer_auth`]: who may send mutating commands (the SO_PEERCRED peer check) and whether the socket still has
//!   the mode and owner the agent gave it.

pub mod authz;
pub mod client;
pub mod peer_auth;
pub mod protocol;
