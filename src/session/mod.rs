//! The registration state machine, sans-io: the caller's calls and the network's events go in,
//! network actions and callouts (callbacks to run on the caller's thread) come out. Time is an
//! argument, never read here, so every transition can be driven by a test table.
//!
//! A file per rule: `machine.rs` (the state, the caller's calls, how an attempt ends),
//! `handshake.rs` (CONNECT, CONNACK, SUBACK), `reply.rs` (a PUBLISH, the caller's parse),
//! `timers.rs` (timeouts, keep-alive, the deadline), `budget.rs` (the one retry budget of
//! faults and transient replies), `policy.rs` (backoff), `types.rs` (what crosses the edge).
#![forbid(unsafe_code)]

mod budget;
mod handshake;
mod machine;
mod policy;
mod reply;
mod timers;
mod types;

pub use machine::Session;
pub use policy::RetryPolicy;
pub use types::{
    Auth, Callout, NetAction, NetEvent, Outcome, Parsed, ReplyStatus, Settings, Ticket,
};

#[cfg(test)]
mod tests;
