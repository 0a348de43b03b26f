//! The registration state machine, sans-io: the caller's calls and the network's events go in,
//! network actions and callouts (callbacks to run on the caller's thread) come out. Time is an
//! argument, never read here, so every transition can be driven by a test table.
#![forbid(unsafe_code)]

mod machine;
mod policy;

pub use machine::{
    describe, Auth, Callout, NetAction, NetEvent, Outcome, Parsed, ReplyStatus, Session, Settings,
    Ticket,
};
pub use policy::RetryPolicy;

#[cfg(test)]
mod tests;
