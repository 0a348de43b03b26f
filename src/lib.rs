//! # prov_mqtt_transport
//!
//! A drop-in replacement for the Azure IoT C SDK's Device Provisioning Service transports over
//! MQTT (TLS, port 8883) and MQTT over WebSockets (WSS, port 443). It exports the SDK's
//! `Prov_Device_MQTT_Protocol()` / `Prov_Device_MQTT_WS_Protocol()` (and the requirement
//! documents' `PROV_MQTT_Protocol()` / `PROV_MQTT_WS_Protocol()`), each returning the SDK's
//! 12-slot provider table.
//!
//! The rooms, data flowing one way: C call → [`ffi`] (the unsafe code, but for the signal mask
//! of the library's threads in [`net`] and the call into the SDK's logger in [`log`]: checks, converts, panic boundary) → [`transport`] (one
//! handle's core) → [`session`] (the sans-io registration state machine, driven by [`dps`], the
//! pure protocol functions; [`mod@trace`] renders its packets) → [`net`] (TCP, proxy, TLS,
//! WebSocket on one shared background I/O thread). Events come back net → session → ffi → C
//! callbacks, only inside `dowork` or `close`, on the caller's thread.
#![deny(unsafe_code)]

#[macro_use]
pub mod log;
pub mod dps;
pub mod error;
pub mod ffi;
pub mod net;
pub mod options;
pub mod secret;
pub mod session;
pub mod trace;
pub mod transport;

pub use error::Error;
