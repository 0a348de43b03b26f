//! The session itself: its state, the caller's calls and callback answers, and the two ways a
//! registration attempt ends (a fault within the budget, or the error path). The rules live
//! next to it, each in its own file: `handshake.rs` (CONNECT, CONNACK, SUBACK), `reply.rs`
//! (a PUBLISH and the caller's parse), `timers.rs` (timeouts, keep-alive, the deadline) and
//! `budget.rs` (when to give up).

use std::collections::VecDeque;
use std::time::Instant;

use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;

use super::budget::{Budget, Next};
use super::types::{Callout, Kind, NetAction, NetEvent, Phase, Request, Settings, Ticket};
use crate::dps::info::{self, RegistrationInfo};
use crate::dps::{self, register_body, retry_after, topic};
use crate::error::Error;
use crate::secret::Secret;
use crate::trace::{describe, Wire};

/// One handle's registration state.
pub struct Session {
    pub(super) settings: Settings,
    pub(super) context: String,
    pub(super) trace: bool,
    pub(super) generation: u64,
    pub(super) registration_id: Option<String>,
    pub(super) phase: Phase,
    pub(super) request: Request,
    pub(super) operation_id: Option<String>,
    pub(super) connected_reported: bool,
    pub(super) link_up: bool,
    pub(super) retry_after: u32,
    pub(super) next_rid: u32,
    pub(super) next_pkid: u16,
    /// The run of faults and transient replies, under one budget.
    pub(super) budget: Budget,
    pub(super) last_tx: Option<Instant>,
    pub(super) ping_sent: Option<Instant>,
    pub(super) pending_service_error: Option<Error>,
    /// The status of the last DPS reply of this registration (0: none yet), for the hook.
    pub(super) last_status: u16,
    /// The body of the reply out for parsing, kept when the details are wanted.
    pub(super) pending_reply: Option<String>,
    /// The details of an assignment, for the caller to run the hook before the data callback.
    pub(super) assigned_info: Option<RegistrationInfo>,
    pub(super) rng: fastrand::Rng,
    pub(super) net: VecDeque<NetAction>,
    pub(super) callouts: VecDeque<Callout>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            context: String::new(),
            trace: false,
            generation: 0,
            registration_id: None,
            phase: Phase::Closed,
            request: Request::Idle,
            operation_id: None,
            connected_reported: false,
            link_up: false,
            retry_after: retry_after::DEFAULT,
            next_rid: 1,
            next_pkid: 1,
            budget: Budget::default(),
            last_tx: None,
            ping_sent: None,
            pending_service_error: None,
            last_status: 0,
            pending_reply: None,
            assigned_info: None,
            rng: fastrand::Rng::new(),
            net: VecDeque::new(),
            callouts: VecDeque::new(),
        }
    }

    /// A fixed jitter sequence, for tests.
    pub fn with_seed(mut self, seed: u64) -> Session {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Settings take effect for the next connection attempt or request.
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// The log context: the registration id once open.
    pub fn context(&self) -> &str {
        &self.context
    }

    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Closed)
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation)
    }

    pub fn operation_id(&self) -> Option<&str> {
        self.operation_id.as_deref()
    }

    pub fn retry_after(&self) -> u32 {
        self.retry_after
    }

    pub fn next_net_action(&mut self) -> Option<NetAction> {
        self.net.pop_front()
    }

    pub fn next_callout(&mut self) -> Option<Callout> {
        self.callouts.pop_front()
    }

    /// The details of the assignment [`Session::parsed`] just reported (when a hook is set):
    /// the caller runs the hook with them, then the data callback.
    pub fn take_info(&mut self) -> Option<RegistrationInfo> {
        self.assigned_info.take()
    }

    // ---- the caller's calls -------------------------------------------------------------

    /// Sets or removes the CSR; once open, its CN must be the registration id.
    pub fn set_csr(&mut self, csr: Option<dps::csr::Csr>) -> Result<(), Error> {
        if let (Some(csr), Some(id)) = (&csr, &self.registration_id) {
            csr_fits(csr, id)?;
        }
        self.settings.csr = csr;
        Ok(())
    }

    pub fn open(&mut self, registration_id: &str) -> Result<(), Error> {
        if self.is_open() {
            return Err(Error::InvalidState(
                "the transport is already open; close it first".into(),
            ));
        }
        let s = &self.settings;
        dps::ids::check_open(registration_id, &s.scope, &s.api_version)?;
        if let Some(csr) = &s.csr {
            csr_fits(csr, registration_id)?;
        }
        self.context = registration_id.to_owned();
        self.registration_id = Some(registration_id.to_owned());
        self.phase = Phase::Disconnected;
        self.connected_reported = false;
        self.budget.reset();
        Ok(())
    }

    /// Disconnects and forgets the registration (id, operation, outstanding request) so the
    /// handle can be opened again. No callout of this generation runs after it.
    pub fn close(&mut self) {
        self.drop_link(true);
        self.generation += 1;
        self.callouts.clear();
        self.phase = Phase::Closed;
        self.registration_id = None;
        self.operation_id = None;
        self.request = Request::Idle;
        self.budget.reset();
        self.pending_service_error = None;
        self.last_status = 0;
        self.pending_reply = None;
        self.assigned_info = None;
        self.retry_after = retry_after::DEFAULT;
        self.connected_reported = false;
    }

    pub fn register(&mut self) -> Result<(), Error> {
        self.check_not_down()?;
        if self.request != Request::Idle {
            return Err(Error::InvalidState(
                "a registration request is already in progress".into(),
            ));
        }
        if self.operation_id.is_some() {
            return Err(Error::InvalidState(
                "an operation id was already received: poll it with get_operation_status, or close and open again"
                    .into(),
            ));
        }
        self.request = Request::Pending(Kind::Register);
        Ok(())
    }

    pub fn get_operation_status(&mut self) -> Result<(), Error> {
        self.check_not_down()?;
        if self.operation_id.is_none() {
            return Err(Error::InvalidState(
                "no operation id has been received yet".into(),
            ));
        }
        if self.request != Request::Idle {
            return Err(Error::InvalidState("a request is already in flight".into()));
        }
        self.request = Request::Pending(Kind::Poll);
        Ok(())
    }

    fn check_not_down(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Down => Err(Error::InvalidState(
                "the transport is in the error state; close and open it again".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The answer to [`Callout::Credentials`].
    pub fn credentials(&mut self, ticket: Ticket, now: Instant, token: Option<Secret>) {
        if ticket != self.ticket() || self.phase != Phase::AwaitCredentials {
            return;
        }
        match token {
            Some(token) => self.connect_with(now, Some(token)),
            None => self.fail(Error::CallbackReturnedNull(
                "registration challenge (SAS token)",
            )),
        }
    }

    /// The answer to [`Callout::Payload`].
    pub fn payload(&mut self, ticket: Ticket, now: Instant, body: Option<Vec<u8>>) {
        let kind = match (&self.request, ticket == self.ticket()) {
            (Request::AwaitPayload(kind), true) => *kind,
            _ => return,
        };
        let Some(body) = body else {
            return self.fail(Error::CallbackReturnedNull("JSON create"));
        };
        if self.phase != Phase::Ready {
            // The connection went away while the callback ran: send after reconnecting.
            self.request = Request::Pending(kind);
            return;
        }
        let body = match (kind, &self.settings.csr) {
            (Kind::Register, Some(csr)) => match register_body::with_csr(&body, csr.base64()) {
                Ok(body) => body,
                Err(e) => return self.fail(Error::RegisterBody(e)),
            },
            // the SDK reuses the register JSON for the poll; the service refuses csr there
            (Kind::Poll, _) => register_body::without_csr(body),
            (Kind::Register, None) => body,
        };
        let rid = self.next_rid;
        self.next_rid = self.next_rid.checked_add(1).unwrap_or(1);
        let topic = match (kind, &self.operation_id) {
            (Kind::Poll, Some(id)) => topic::poll(rid, id),
            _ => topic::register(rid),
        };
        self.send(
            now,
            Packet::Publish(Publish::new(topic, QoS::AtMostOnce, body)),
        );
        self.request = Request::Sent { kind, rid, at: now };
    }

    /// Takes the error path now (a caught panic, a failure outside the state machine).
    pub fn fail_now(&mut self, error: Error) {
        if self.is_open() {
            self.fail(error);
        }
    }

    // ---- the network --------------------------------------------------------------------

    /// The network layer could not even start a connection (e.g. no client certificate).
    pub fn connect_failed(&mut self, now: Instant, error: Error) {
        self.fault(now, error);
    }

    pub fn on_net(&mut self, now: Instant, event: NetEvent) {
        if !self.link_up {
            return;
        }
        match event {
            NetEvent::Up(description) => {
                if self.trace {
                    trace!(&self.context, "connected: {description}");
                }
            }
            NetEvent::Down(error) => self.fault(now, error),
            NetEvent::Packet(packet) => {
                if self.trace {
                    trace!(&self.context, "<- {}", describe(&packet));
                }
                self.on_packet(now, packet);
            }
        }
    }

    fn on_packet(&mut self, now: Instant, packet: Packet) {
        match packet {
            Packet::ConnAck(ack) => self.on_connack(now, ack),
            Packet::SubAck(ack) => self.on_suback(now, ack),
            Packet::Publish(publish) => self.on_publish(now, publish),
            Packet::PingResp => self.ping_sent = None,
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) | Packet::UnsubAck(_) => {}
            other => self.unexpected(now, &other),
        }
    }

    pub(super) fn send(&mut self, now: Instant, packet: Packet) {
        self.last_tx = Some(now);
        self.emit(packet);
    }

    /// Queues a packet without touching the keep-alive clock (the last one on a connection).
    fn emit(&mut self, packet: Packet) {
        if self.trace {
            trace!(&self.context, "-> {}", describe(&packet));
        }
        self.net.push_back(NetAction::Send(Wire::new(packet)));
    }

    fn drop_link(&mut self, graceful: bool) {
        if !self.link_up {
            return;
        }
        if graceful && matches!(self.phase, Phase::Ready | Phase::Handshake { .. }) {
            self.emit(Packet::Disconnect);
        }
        self.net.push_back(NetAction::Disconnect { graceful });
        self.link_up = false;
    }

    // ---- how an attempt ends ------------------------------------------------------------

    /// A transient fault is retried within the budget; anything else takes the error path.
    pub(super) fn fault(&mut self, now: Instant, error: Error) {
        if matches!(self.phase, Phase::Closed | Phase::Down) {
            return;
        }
        self.drop_link(false);
        if !error.is_transient() {
            return self.fail(error);
        }
        let line = error.to_string();
        let policy = &self.settings.retry;
        let (attempt, delay) = match self.budget.spend(now, policy, self.rng.f64(), error) {
            Next::Retry { attempt, delay } => (attempt, delay),
            Next::GiveUp(spent) => return self.fail(spent),
        };
        info!(
            &self.context,
            "{line}; reconnecting in {} s (attempt {attempt} of {})",
            crate::log::Seconds(delay, 2),
            policy.max_attempts
        );
        self.request = match self.request {
            Request::Sent { kind, .. } | Request::AwaitPayload(kind) => Request::Pending(kind),
            ref other => other.clone(),
        };
        self.phase = Phase::Backoff { until: now + delay };
    }

    /// The error path: one log line, `error_cb(KEY_FAIL)` for key failures, then
    /// `data_callback(ERROR)` once; idle until close.
    pub(super) fn fail(&mut self, error: Error) {
        if matches!(self.phase, Phase::Down | Phase::Closed) {
            return;
        }
        error!(&self.context, "{error}");
        if error.is_key_failure() {
            self.callouts.push_back(Callout::KeyFail);
        }
        self.drop_link(true);
        self.phase = Phase::Down;
        self.request = Request::Idle;
        if self.settings.report_info {
            let info = match error.service() {
                Some((status, service)) => info::failure(status, Some(service)),
                None => info::failure(self.last_status, None),
            };
            self.callouts.push_back(Callout::Info(Box::new(info)));
        }
        self.callouts.push_back(Callout::Failed);
    }
}

/// A CSR is for one registration id: its subject CN.
fn csr_fits(csr: &dps::csr::Csr, registration_id: &str) -> Result<(), Error> {
    csr.check_registration_id(registration_id)
        .map_err(|e| Error::InvalidArgument {
            what: "certificate_signing_request",
            why: e.to_string(),
        })
}
