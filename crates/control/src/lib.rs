//! The conventions between Palisade's processes, and nothing else: a role crate (supervisor,
//! engine, console) depends on this one instead of on another role crate.
//!
//! - [`handoff`]: the listening sockets the supervisor hands to a child
//!   (`PALISADE_LISTEN_FDS`) and the child's readiness report (`PALISADE_NOTIFY_FD`);
//! - [`engine`]: the engine control protocol (`DIR/run/engine.sock`) and its client;
//! - [`supervisor`]: the supervisor control protocol (`DIR/run/supervisor.sock`) and its
//!   client;
//! - [`server`]: the one unix-socket server both control sockets run on (line-delimited JSON,
//!   bounded in request size, time and connections).

pub mod engine;
pub mod ha;
pub mod handoff;
pub mod server;
pub mod supervisor;

mod client;

pub use client::ClientError;
pub use handoff::{
    HandoffError, LISTEN_FDS_ENV, ListenerRole, NOTIFY_FD_ENV, inherited_listeners, notify_ready,
};

#[cfg(test)]
mod tests;
