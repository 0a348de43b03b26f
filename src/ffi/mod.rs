//! The C boundary, and the only place with `unsafe` besides the call into the SDK's logger
//! (`log.rs`) and the threads' signal mask
//! (`net::signals`): `repr(C)` mirrors of the SDK's types, the two provider tables and four
//! entry points, pointer and string checks, the panic boundary, and calls into the caller's
//! callbacks. It validates and converts, then calls the core.
#![allow(unsafe_code)]
#![allow(non_camel_case_types, non_snake_case)]

mod boundary;
mod callbacks;
mod handle;
mod provider;
pub mod types;

pub use provider::{
    PROV_MQTT_Protocol, PROV_MQTT_WS_Protocol, Prov_Device_MQTT_Protocol,
    Prov_Device_MQTT_WS_Protocol,
};
pub use types::*;

#[cfg(test)]
mod tests;
