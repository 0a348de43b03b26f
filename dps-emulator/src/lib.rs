//! dps-emulator: a local Azure Device Provisioning Service over MQTT/TLS and MQTT/WSS.
//!
//! It speaks the DPS device protocol (MQTT 3.1.1, `$dps/registrations/...` topics) well enough
//! for real device SDKs to register against it, authenticates devices by X.509 certificate or
//! symmetric key (SAS token), and injects faults per registration id ([`Scenario`]). Tests start
//! one in-process:
//!
//! ```no_run
//! use dps_emulator::{Config, Emulator, pki::Pki};
//! let pki = Pki::generate(&["dev1"]);
//! let emu = Emulator::start(Config::ephemeral().with_pki(pki)).unwrap();
//! println!("mqtt on {}, wss on {}", emu.mqtt_addr(), emu.ws_addr());
//! ```
#![forbid(unsafe_code)]

pub mod config;
mod conn;
pub mod dps;
pub mod issue;
mod log;
pub mod pki;
mod registry;
pub mod sas;
pub mod scenario;
mod server;
pub mod timeline;
pub mod tls;
pub mod ws;

pub use config::{Config, ConfigFile};
pub use pki::{DeviceCert, Pki};
pub use scenario::{DropAfter, ErrorReply, Final, Scenario, Stage};
pub use timeline::TimelineEntry;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// The largest MQTT packet accepted or sent, in bytes (the DPS limit, 96 KiB).
pub const MAX_PACKET: usize = 98_304;

/// State shared by the listeners and every connection.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) tls: tls::Tls,
    pub(crate) log: log::Log,
    pub(crate) timeline: Arc<timeline::Timeline>,
    pub(crate) registry: registry::Registry,
    pub(crate) issuer: issue::Issuer,
    pub(crate) accepted: AtomicU64,
}

/// A running emulator. Dropping it (or [`Emulator::shutdown`]) stops it and closes every
/// connection.
pub struct Emulator {
    shared: Arc<Shared>,
    pki: pki::Pki,
    mqtt_addr: SocketAddr,
    ws_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Emulator {
    /// Binds both listeners and starts serving on a background thread with its own tokio
    /// runtime. Returns once the ports are bound (errors: port in use, bad certificates...).
    pub fn start(mut cfg: Config) -> io::Result<Emulator> {
        let pki = match cfg.pki.take() {
            Some(p) => p,
            None => pki::Pki::try_generate(&[])?,
        };
        let tls = tls::Tls::new(&pki)?;
        let issuer = issue::Issuer::new(&pki)?;
        let bind = |port: u16, what: &str| {
            let l = std::net::TcpListener::bind((cfg.bind, port))
                .map_err(|e| context(e, format!("binding the {what} port {}:{port}", cfg.bind)))?;
            l.set_nonblocking(true)?;
            Ok::<_, io::Error>(l)
        };
        let mqtt = bind(cfg.mqtt_port, "MQTT")?;
        let wss = bind(cfg.ws_port, "WebSocket")?;
        let mqtt_addr = mqtt.local_addr()?;
        let ws_addr = wss.local_addr()?;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dps-emulator")
            .enable_all()
            .build()?;
        // `enter`, not `block_on`: start() may be called from inside another runtime (tests).
        let (mqtt, wss) = {
            let _in_runtime = rt.enter();
            (
                tokio::net::TcpListener::from_std(mqtt)?,
                tokio::net::TcpListener::from_std(wss)?,
            )
        };
        let shared = Arc::new(Shared {
            tls,
            log: log::Log::new(cfg.log_to_stderr),
            timeline: Arc::new(timeline::Timeline::new(cfg.timeline_path.clone())),
            registry: registry::Registry::default(),
            issuer,
            accepted: AtomicU64::new(0),
            cfg,
        });
        let (stop, stop_rx) = watch::channel(false);
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dps-emulator".into())
            .spawn(move || {
                rt.block_on(server::serve(mqtt, wss, serving, stop_rx));
                // Cancels the connection tasks; their timeline records are written as they drop.
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(Emulator {
            shared,
            pki,
            mqtt_addr,
            ws_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Address of the MQTT-over-TLS listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// Address of the MQTT-over-WebSocket listener (`wss://<addr>/$iothub/websocket`).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The certificates in use (generated at start when the config had none).
    pub fn pki(&self) -> &pki::Pki {
        &self.pki
    }

    /// The configuration in use (its `pki` field is `None`; see [`Emulator::pki`]).
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Every packet in and out so far, in order of occurrence per connection.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        self.shared.timeline.all()
    }

    /// TCP connections accepted so far, on both listeners.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// The log lines printed so far (without the `dps-emulator: ` prefix used on stderr).
    pub fn log_lines(&self) -> Vec<String> {
        self.shared.log.all()
    }

    /// Stops serving, closes every connection and waits for the background thread.
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
