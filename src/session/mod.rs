//! The registration state machine, sans-io: the caller's calls and the network's events go in,
//! network actions and callouts (callbacks to run on the caller's thread) come out. Time is an
//! argument, never read here, so every transition can be driven by a test table.
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
