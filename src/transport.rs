//! One transport handle's core: the session, the handle's settings, and its current link. The C
//! boundary calls these methods under the handle's lock and runs the callouts they return with
//! the lock released.

use std::sync::Arc;
use std::time::Instant;

use rustls::{ClientConfig, RootCertStore};

use crate::error::Error;
use crate::net::{tls, ConnectSpec, Endpoint, Flavor, Goodbye, Held, Link, Proxy, TlsSetup};
use crate::options::Setting;
use crate::secret::Secret;
use crate::session::{Auth, Callout, Outcome, Parsed, Session, Settings, Ticket};

/// At most this many network events are handled by one `dowork`; the rest wait for the next
/// call (and, once the link's small queue is full, in the server's TCP buffers), so a server
/// that floods packets cannot make one call last long.
pub const MAX_EVENTS_PER_DOWORK: usize = crate::net::EVENT_QUEUE;

pub struct Transport {
    flavor: Flavor,
    endpoint: Endpoint,
    session: Session,
    trusted: Option<Arc<RootCertStore>>,
    identity: Option<tls::Identity>,
    proxy: Option<Proxy>,
    min_version: tls::MinVersion,
    tls_config: Option<Arc<ClientConfig>>,
    link: Option<Link>,
    /// The last graceful close, which the caller's `close` waits for (bounded).
    goodbye: Option<Goodbye>,
    /// Events handled since the last `poll` that returned nothing (one `dowork`).
    events_this_round: usize,
    /// Counts this handle among the live ones (what the process hands back when none is left).
    _held: Held,
}

impl Transport {
    pub fn create(
        flavor: Flavor,
        uri: &str,
        auth: Auth,
        scope: &str,
        api_version: &str,
    ) -> Result<Transport, Error> {
        let endpoint = Endpoint::parse(uri, flavor.default_port())?;
        crate::dps::ids::check_create(scope, api_version)?;
        Ok(Transport {
            flavor,
            endpoint,
            session: Session::new(Settings::new(
                scope.to_owned(),
                api_version.to_owned(),
                auth,
            )),
            trusted: None,
            identity: None,
            proxy: None,
            min_version: tls::MinVersion::default(),
            tls_config: None,
            link: None,
            goodbye: None,
            events_this_round: 0,
            _held: crate::net::hold(),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn context(&self) -> &str {
        self.session.context()
    }

    /// See [`Session::take_info`].
    pub fn take_info(&mut self) -> Option<crate::dps::info::RegistrationInfo> {
        self.session.take_info()
    }

    pub fn open(&mut self, registration_id: &str) -> Result<(), Error> {
        self.session.open(registration_id)
    }

    /// Forgets the registration; when the connection is up, its last packets and DISCONNECT
    /// are written before this returns (waiting at most `GOODBYE_WAIT`), so a process that
    /// exits right after `close` or `destroy` still says goodbye.
    pub fn close(&mut self) {
        self.session.close();
        self.run_net(Instant::now());
        self.events_this_round = 0;
        if let Some(goodbye) = self.goodbye.take() {
            goodbye.wait();
        }
    }

    pub fn register(&mut self) -> Result<(), Error> {
        self.session.register()
    }

    pub fn get_operation_status(&mut self) -> Result<(), Error> {
        self.session.get_operation_status()
    }

    pub fn set_trace(&mut self, on: bool) {
        self.session.set_trace(on);
    }

    pub fn set_x509(&mut self, certificate: &str, key: &str) -> Result<(), Error> {
        self.identity = Some(tls::identity(certificate, key)?);
        self.tls_config = None;
        Ok(())
    }

    pub fn set_trusted(&mut self, pem: &str) -> Result<(), Error> {
        self.trusted = Some(tls::trusted_roots(pem)?);
        self.tls_config = None;
        Ok(())
    }

    pub fn set_proxy(
        &mut self,
        host: &str,
        port: i32,
        credentials: Option<(String, Secret)>,
    ) -> Result<(), Error> {
        if host.is_empty() {
            return Err(Error::InvalidArgument {
                what: "proxy host_address",
                why: "is empty".into(),
            });
        }
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Error::InvalidArgument {
                what: "proxy port",
                why: format!("{port} is not a TCP port"),
            })?;
        self.proxy = Some(Proxy {
            host: host.to_owned(),
            port,
            credentials,
        });
        Ok(())
    }

    pub fn apply(&mut self, setting: Setting) -> Result<(), Error> {
        match setting {
            Setting::MinTls13(on) => {
                self.min_version = if on {
                    tls::MinVersion::Tls13
                } else {
                    tls::MinVersion::Tls12
                };
                self.tls_config = None;
                return Ok(());
            }
            Setting::Trace(on) => {
                self.session.set_trace(on);
                return Ok(());
            }
            Setting::TrustedCerts(pem) => return self.set_trusted(&pem),
            Setting::Csr(csr) => return self.session.set_csr(csr),
            _ => {}
        }
        let settings = self.session.settings_mut();
        match setting {
            Setting::ReplyTimeout(d) => settings.reply_timeout = d,
            Setting::RetryMaxAttempts(n) => settings.retry.max_attempts = n,
            Setting::RetryMaxTime(d) => settings.retry.max_time = d,
            Setting::RetryInitialDelay(d) => settings.retry.initial_delay = d,
            Setting::KeepAlive(s) => settings.keep_alive = s,
            Setting::ApiVersion(v) => settings.api_version_override = v,
            Setting::ReportInfo(on) => settings.report_info = on,
            Setting::MinTls13(_)
            | Setting::Trace(_)
            | Setting::TrustedCerts(_)
            | Setting::Csr(_) => {}
        }
        Ok(())
    }

    /// Delivers network events (at most [`MAX_EVENTS_PER_DOWORK`] until a call returns
    /// nothing, which ends a `dowork`), advances timers, and returns the next callout to run.
    pub fn poll(&mut self, now: Instant) -> Option<Callout> {
        if let Some(callout) = self.session.next_callout() {
            return Some(callout);
        }
        while self.events_this_round < MAX_EVENTS_PER_DOWORK {
            let Some(event) = self.link.as_mut().and_then(Link::try_event) else {
                break;
            };
            self.events_this_round += 1;
            self.session.on_net(now, event);
            self.run_net(now);
        }
        self.session.tick(now);
        self.run_net(now);
        let callout = self.session.next_callout();
        if callout.is_none() {
            self.events_this_round = 0;
        }
        callout
    }

    pub fn credentials(&mut self, ticket: Ticket, now: Instant, token: Option<Secret>) {
        self.session.credentials(ticket, now, token);
        self.run_net(now);
    }

    pub fn payload(&mut self, ticket: Ticket, now: Instant, body: Option<Vec<u8>>) {
        self.session.payload(ticket, now, body);
        self.run_net(now);
    }

    pub fn parsed(&mut self, ticket: Ticket, parsed: Option<Parsed>) -> Outcome {
        let outcome = self.session.parsed(ticket, parsed);
        self.run_net(Instant::now());
        outcome
    }

    /// Takes the error path (after a caught panic).
    pub fn fail_now(&mut self, error: Error) {
        self.session.fail_now(error);
        self.run_net(Instant::now());
    }

    fn run_net(&mut self, now: Instant) {
        while let Some(action) = self.session.next_net_action() {
            match action {
                crate::session::NetAction::Connect => {
                    self.link = None;
                    match self.start_link() {
                        Ok(link) => self.link = Some(link),
                        Err(e) => self.session.connect_failed(now, e),
                    }
                }
                crate::session::NetAction::Send(wire) => {
                    if let Some(link) = &self.link {
                        link.send(wire.into_packet());
                    }
                }
                crate::session::NetAction::Disconnect { graceful } => {
                    if let Some(link) = self.link.take() {
                        self.goodbye = link.close(graceful);
                    }
                }
            }
        }
    }

    fn start_link(&mut self) -> Result<Link, Error> {
        if self.session.settings().auth == Auth::X509 && self.identity.is_none() {
            return Err(Error::MissingClientCertificate);
        }
        let tls = match &self.tls_config {
            Some(config) => TlsSetup::Ready(config.clone()),
            // the first read of the platform store happens off the caller's thread
            None if self.trusted.is_none() && !tls::native_roots_loaded() => {
                TlsSetup::PlatformRoots {
                    identity: self.identity.clone(),
                    min: self.min_version,
                }
            }
            None => {
                let config = tls::client_config(
                    self.trusted.as_ref(),
                    self.identity.as_ref(),
                    self.min_version,
                )?;
                self.tls_config = Some(config.clone());
                TlsSetup::Ready(config)
            }
        };
        let spec = ConnectSpec {
            endpoint: self.endpoint.clone(),
            proxy: self.proxy.clone(),
            tls,
        };
        (self.flavor.factory())(spec)
    }
}
