//! The Rust end-to-end tests, one binary (one link step instead of seven): the C ABI driven by
//! the test kit's LL-client stand-in (`testkit`) against the DPS emulator and scripted servers.
//! `tests/mosquitto.rs` stays a binary of its own: it moves the library's shared I/O thread into
//! a network namespace, which would take every other test's connections with it.
//!
//! `cargo test --test all faults::` runs one module.

mod budget;
mod csr;
mod e2e;
mod faults;
mod hostile_caller;
mod hostile_server;
mod proxy;
mod secrets;
mod tls_failures;
