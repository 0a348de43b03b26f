//! Connection setup and the shared I/O runtime: TCP, HTTP CONNECT proxy, TLS (rustls),
//! WebSocket, and the link that carries MQTT packets between a connection task on the
//! background I/O thread and the handle's `dowork` on the caller's thread.

mod connect;
pub mod endpoint;
mod fork;
mod io;
mod link;
mod release;
mod resolve;
mod resumption;
mod runtime;
mod signals;
pub mod tls;
mod upgrade;

pub use endpoint::Endpoint;
pub use link::{events_delivered, Goodbye, Link, EVENT_QUEUE};
pub use release::{hold, Held};
pub use resolve::settle as settle_resolver_threads;

use std::sync::Arc;

use crate::secret::Secret;

/// Which of the SDK's two transports a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MQTT over TLS, port 8883.
    Tls,
    /// MQTT over WebSocket over TLS, port 443, path `/$iothub/websocket`.
    WebSocket,
}

impl Flavor {
    pub fn default_port(self) -> u16 {
        match self {
            Flavor::Tls => 8883,
            Flavor::WebSocket => 443,
        }
    }

    /// The connection factory behind this flavor's provider table.
    pub fn factory(self) -> fn(ConnectSpec) -> Result<Link, crate::Error> {
        match self {
            Flavor::Tls => mqtt_transport_io,
            Flavor::WebSocket => mqtt_transport_ws_io,
        }
    }
}

/// An HTTP CONNECT proxy, with basic auth when both user name and password are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Secret)>,
}

/// Everything a connection attempt needs.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    pub endpoint: Endpoint,
    pub proxy: Option<Proxy>,
    pub tls: TlsSetup,
}

/// The TLS client configuration of a connection attempt.
#[derive(Debug, Clone)]
pub enum TlsSetup {
    Ready(Arc<rustls::ClientConfig>),
    /// Built with the platform trust store on a short-lived thread, while TCP connects: reading
    /// the store for the first time takes 5-50 ms, too long for `dowork`.
    PlatformRoots {
        identity: Option<tls::Identity>,
        min: tls::MinVersion,
    },
}

/// MQTT over TLS to `host:8883` (or the port in the URI), through the proxy when one is set.
pub fn mqtt_transport_io(spec: ConnectSpec) -> Result<Link, crate::Error> {
    Link::spawn(on_the_callers_thread(spec), Flavor::Tls)
}

/// MQTT over WSS to `wss://host:443/$iothub/websocket`, through the proxy when one is set.
pub fn mqtt_transport_ws_io(spec: ConnectSpec) -> Result<Link, crate::Error> {
    Link::spawn(on_the_callers_thread(spec), Flavor::WebSocket)
}

/// What a connection attempt reads from the process environment is read here, on the
/// application's thread, before the attempt moves to ours (README "Threads", setenv).
fn on_the_callers_thread(spec: ConnectSpec) -> ConnectSpec {
    if let TlsSetup::PlatformRoots { .. } = spec.tls {
        tls::note_trust_paths();
    }
    spec
}
