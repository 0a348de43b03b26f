//! The state machine itself. See the module docs in `mod.rs`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{Connect, Packet, PubAck, Publish, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;

use super::policy::RetryPolicy;
use crate::dps::{self, body, body::ServiceError, retry_after, topic};
use crate::error::Error;
use crate::secret::Secret;

/// How the device authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    X509,
    SymmetricKey,
}

/// Fixed at create time (plus what `set_option` may change before a registration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub scope: String,
    pub api_version: String,
    pub auth: Auth,
    /// How long to wait for CONNACK+SUBACK and for each reply.
    pub reply_timeout: Duration,
    /// MQTT keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    pub retry: RetryPolicy,
}

impl Settings {
    pub fn new(scope: String, api_version: String, auth: Auth) -> Settings {
        Settings {
            scope,
            api_version,
            auth,
            reply_timeout: Duration::from_secs(30),
            keep_alive: 60,
            retry: RetryPolicy::default(),
        }
    }
}

/// The registration statuses of the C ABI (`PROV_DEVICE_TRANSPORT_STATUS`), same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    Connected,
    Authenticated,
    Unassigned,
    Assigning,
    Assigned,
    Blacklisted,
    Transient,
    Error,
    Disabled,
}

/// Identifies the open/close generation a callout belongs to; answers for an older generation
/// (the caller closed the handle inside a callback) are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A callback the caller's thread must run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callout {
    /// `status_cb(status, retry_after)`.
    Status {
        status: ReplyStatus,
        retry_after: u32,
    },
    /// Call `reg_challenge_cb(NULL, 0, "registration")` and answer with [`Session::credentials`].
    Credentials(Ticket),
    /// Call `json_create_cb(NULL, NULL)` and answer with [`Session::payload`].
    Payload(Ticket),
    /// Call `json_parse_cb(json)` and answer with [`Session::parsed`].
    Parse { ticket: Ticket, json: String },
    /// `error_cb(PROV_DEVICE_ERROR_KEY_FAIL)`.
    KeyFail,
    /// `error_cb(PROV_DEVICE_ERROR_KEY_UNAUTHORIZED)`.
    KeyUnauthorized,
    /// `data_callback(PROV_DEVICE_TRANSPORT_RESULT_ERROR, NULL, NULL, NULL)`: the error path.
    Failed,
}

/// What the caller's parse callback made of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// None when the callback returned a value outside the enum.
    pub status: Option<ReplyStatus>,
    pub operation_id: Option<String>,
}

/// What to do with a parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `data_callback(OK, key, hub, device id)` with the parsed record's fields.
    Assigned,
    /// `status_cb(status, retry_after)`.
    Status {
        status: ReplyStatus,
        retry_after: u32,
    },
    /// Nothing (stale answer, or the error path was queued).
    Nothing,
}

/// What the network layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetAction {
    /// Open a new connection (TCP, proxy, TLS, WebSocket) to the endpoint.
    Connect,
    /// Write this packet on the current connection.
    Send(Packet),
    /// Drop the current connection; `graceful` flushes what was sent first.
    Disconnect { graceful: bool },
}

/// What the network layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The secure channel is up (a description for the trace).
    Up(String),
    Packet(Packet),
    Down(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Poll,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Register => "register request",
            Kind::Poll => "operation status request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Idle,
    /// Asked for by the caller, not yet sent.
    Pending(Kind),
    /// The payload callout is out.
    AwaitPayload(Kind),
    Sent {
        kind: Kind,
        rid: u32,
        at: Instant,
    },
    /// The parse callout is out for this reply.
    AwaitParse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    ConnAck { subscribe_pkid: u16 },
    SubAck { pkid: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not open.
    Closed,
    /// Open; connects on the next tick.
    Disconnected,
    AwaitCredentials,
    Handshake {
        since: Instant,
        stage: Stage,
    },
    Ready,
    Backoff {
        until: Instant,
    },
    /// The error path was taken; idle until close.
    Down,
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    since: Instant,
    attempts: u32,
}

/// One handle's registration state.
pub struct Session {
    settings: Settings,
    context: String,
    trace: bool,
    generation: u64,
    registration_id: Option<String>,
    phase: Phase,
    request: Request,
    operation_id: Option<String>,
    connected_reported: bool,
    link_up: bool,
    retry_after: u32,
    next_rid: u32,
    next_pkid: u16,
    faults: Option<Faults>,
    /// The run of consecutive transient (>= 429) DPS replies, under the same budget as faults.
    transient_replies: Option<Faults>,
    last_tx: Option<Instant>,
    ping_sent: Option<Instant>,
    pending_service_error: Option<Error>,
    rng: fastrand::Rng,
    net: VecDeque<NetAction>,
    callouts: VecDeque<Callout>,
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
            faults: None,
            transient_replies: None,
            last_tx: None,
            ping_sent: None,
            pending_service_error: None,
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

    pub fn trace_on(&self) -> bool {
        self.trace
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

    pub fn has_callouts(&self) -> bool {
        !self.callouts.is_empty()
    }

    // ---- the caller's calls -------------------------------------------------------------

    pub fn open(&mut self, registration_id: &str) -> Result<(), Error> {
        if self.is_open() {
            return Err(Error::InvalidState(
                "the transport is already open; close it first".into(),
            ));
        }
        // A CONNECT with an over-long client id or user name cannot be encoded: without this
        // check it was dropped on the I/O thread and the registration failed later for a
        // misleading reason (and every log line carried the whole id as its context).
        for (what, value) in [
            ("registration_id", registration_id),
            ("scope_id", self.settings.scope.as_str()),
            ("api_version", self.settings.api_version.as_str()),
        ] {
            if value.len() > dps::MAX_ID_LEN {
                return Err(Error::InvalidArgument {
                    what,
                    why: format!(
                        "is {} bytes long; DPS accepts at most {}",
                        value.len(),
                        dps::MAX_ID_LEN
                    ),
                });
            }
        }
        self.context = registration_id.to_owned();
        self.registration_id = Some(registration_id.to_owned());
        self.phase = Phase::Disconnected;
        self.connected_reported = false;
        self.faults = None;
        self.transient_replies = None;
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
        self.faults = None;
        self.transient_replies = None;
        self.pending_service_error = None;
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

    /// The answer to [`Callout::Parse`]: what to call back with the caller's record.
    pub fn parsed(&mut self, ticket: Ticket, parsed: Option<Parsed>) -> Outcome {
        if ticket != self.ticket() || self.request != Request::AwaitParse {
            return Outcome::Nothing;
        }
        self.request = Request::Idle;
        let service = self.pending_service_error.take();
        let Some(parsed) = parsed else {
            self.fail(service.unwrap_or(Error::CallbackReturnedNull("JSON parse")));
            return Outcome::Nothing;
        };
        match parsed.status {
            Some(status @ (ReplyStatus::Assigning | ReplyStatus::Unassigned)) => {
                match parsed.operation_id {
                    Some(id) => {
                        if self.operation_id.is_none() {
                            self.operation_id = Some(id);
                        }
                        Outcome::Status {
                            status,
                            retry_after: self.retry_after,
                        }
                    }
                    None => {
                        self.fail(Error::RegistrationFailed(format!(
                            "a {status:?} reply carried no operationId"
                        )));
                        Outcome::Nothing
                    }
                }
            }
            Some(ReplyStatus::Assigned) => {
                info!(&self.context, "registration assigned");
                Outcome::Assigned
            }
            other => {
                let why = match other {
                    Some(s) => format!("the service reported {s:?}"),
                    None => "the parse callback returned an unknown status".to_owned(),
                };
                self.fail(service.unwrap_or(Error::RegistrationFailed(why)));
                Outcome::Nothing
            }
        }
    }

    /// Takes the error path now (a caught panic, a failure outside the state machine).
    pub fn fail_now(&mut self, error: Error) {
        if self.is_open() {
            self.fail(error);
        }
    }

    // ---- time and the network -----------------------------------------------------------

    /// Advances timers: first connection, reconnect backoff, timeouts, keep-alive, and sends a
    /// pending request once subscribed.
    pub fn tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Disconnected => self.begin_connect(now),
            Phase::Backoff { until } if now >= until => self.begin_connect(now),
            Phase::Handshake { since, stage }
                if now.saturating_duration_since(since) >= self.settings.reply_timeout =>
            {
                let waiting_for = match stage {
                    Stage::ConnAck { .. } => "CONNACK",
                    Stage::SubAck { .. } => "SUBACK",
                };
                self.fault(
                    now,
                    Error::Timeout {
                        waiting_for,
                        after: self.settings.reply_timeout,
                    },
                );
            }
            Phase::Ready => self.tick_ready(now),
            _ => {}
        }
    }

    fn tick_ready(&mut self, now: Instant) {
        if let Request::Sent { kind, at, .. } = self.request {
            if now.saturating_duration_since(at) >= self.settings.reply_timeout {
                let waiting_for = match kind {
                    Kind::Register => "reply to the register request",
                    Kind::Poll => "reply to the operation status request",
                };
                return self.fault(
                    now,
                    Error::Timeout {
                        waiting_for,
                        after: self.settings.reply_timeout,
                    },
                );
            }
        }
        let keep_alive = Duration::from_secs(u64::from(self.settings.keep_alive));
        if !keep_alive.is_zero() {
            match (self.ping_sent, self.last_tx) {
                (Some(sent), _) if now.saturating_duration_since(sent) >= keep_alive => {
                    return self.fault(
                        now,
                        Error::Timeout {
                            waiting_for: "PINGRESP",
                            after: keep_alive,
                        },
                    );
                }
                (None, Some(last)) if now.saturating_duration_since(last) >= keep_alive => {
                    self.send(now, Packet::PingReq);
                    self.ping_sent = Some(now);
                }
                _ => {}
            }
        }
        if let Request::Pending(kind) = self.request {
            self.request = Request::AwaitPayload(kind);
            self.callouts.push_back(Callout::Payload(self.ticket()));
        }
    }

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
        match (packet, &self.phase) {
            (
                Packet::ConnAck(ack),
                Phase::Handshake {
                    stage: Stage::ConnAck { subscribe_pkid },
                    ..
                },
            ) => {
                let subscribe_pkid = *subscribe_pkid;
                if ack.code == ConnectReturnCode::Success {
                    self.phase = Phase::Handshake {
                        since: now,
                        stage: Stage::SubAck {
                            pkid: subscribe_pkid,
                        },
                    };
                    if !self.connected_reported {
                        self.connected_reported = true;
                        self.callouts.push_back(Callout::Status {
                            status: ReplyStatus::Connected,
                            retry_after: self.retry_after,
                        });
                    }
                } else {
                    self.callouts.push_back(Callout::KeyUnauthorized);
                    self.fail(Error::ConnAckRefused(connack_code(ack.code)));
                }
            }
            (
                Packet::SubAck(ack),
                Phase::Handshake {
                    stage: Stage::SubAck { pkid },
                    ..
                },
            ) if ack.pkid == *pkid => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    self.fail(Error::SubAckRefused);
                } else {
                    self.phase = Phase::Ready;
                    self.ping_sent = None;
                    self.tick_ready(now);
                }
            }
            (Packet::Publish(publish), _) => self.on_publish(now, publish),
            (Packet::PingResp, _) => self.ping_sent = None,
            (
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) | Packet::UnsubAck(_),
                _,
            ) => {}
            (other, _) => {
                let what = describe(&other);
                self.fault(now, Error::Protocol(format!("unexpected {what}")));
            }
        }
    }

    fn on_publish(&mut self, now: Instant, publish: Publish) {
        match publish.qos {
            QoS::AtLeastOnce => self.send(now, Packet::PubAck(PubAck::new(publish.pkid))),
            QoS::ExactlyOnce => {
                error!(
                    &self.context,
                    "ignored a QoS 2 message on {:?}: DPS replies use QoS 1", publish.topic
                );
                return;
            }
            QoS::AtMostOnce => {}
        }
        let reply = match topic::parse_reply(&publish.topic) {
            Ok(reply) => reply,
            Err(e) => {
                return error!(
                    &self.context,
                    "ignored a message on {:?}: {e}", publish.topic
                )
            }
        };
        let (kind, rid) = match self.request {
            Request::Sent { kind, rid, .. } => (kind, rid),
            _ => {
                return error!(
                &self.context,
                "ignored an unsolicited reply (status {}, $rid={:?}): no request is outstanding",
                reply.status,
                reply.rid.as_deref().unwrap_or("none")
            )
            }
        };
        if reply.rid.as_deref() != Some(rid.to_string().as_str()) {
            return error!(
                &self.context,
                "ignored a reply with $rid={:?}: waiting for $rid={rid}",
                reply.rid.as_deref().unwrap_or("none")
            );
        }
        if let Some(value) = &reply.retry_after {
            self.retry_after = retry_after::parse(value);
        }
        self.faults = None;
        self.request = Request::Idle;
        if reply.status >= dps::TRANSIENT_STATUS {
            let service_error = body::check_payload(&publish.payload)
                .ok()
                .and_then(ServiceError::from_body);
            // A storm of throttling or server errors is bounded by the retry budget too: the
            // SDK retries it forever (users report waits of hours), we end it like a fault.
            let policy = &self.settings.retry;
            let run = self.transient_replies.get_or_insert(Faults {
                since: now,
                attempts: 0,
            });
            run.attempts += 1;
            let elapsed = now.saturating_duration_since(run.since);
            if run.attempts > policy.max_attempts || elapsed >= policy.max_time {
                let attempts = run.attempts - 1;
                return self.fail(Error::RetryBudgetSpent {
                    attempts,
                    elapsed,
                    last: Box::new(Error::Service {
                        status: reply.status,
                        error: service_error.unwrap_or_default(),
                    }),
                });
            }
            let detail = service_error.map(|e| format!(" ({e})")).unwrap_or_default();
            info!(
                &self.context,
                "DPS replied {} to the {}{detail}: transient, retry in {} s",
                reply.status,
                kind.name(),
                self.retry_after
            );
            self.callouts.push_back(Callout::Status {
                status: ReplyStatus::Transient,
                retry_after: self.retry_after,
            });
            return;
        }
        self.transient_replies = None;
        let json = match body::check_payload(&publish.payload) {
            Ok(json) => json.to_owned(),
            Err(e) => return self.fail(Error::Payload(e)),
        };
        self.pending_service_error = ServiceError::from_body(&json)
            .or_else(|| (reply.status >= 300).then(ServiceError::default))
            .map(|error| Error::Service {
                status: reply.status,
                error,
            });
        self.request = Request::AwaitParse;
        self.callouts.push_back(Callout::Parse {
            ticket: self.ticket(),
            json,
        });
    }

    // ---- internals ----------------------------------------------------------------------

    fn begin_connect(&mut self, now: Instant) {
        match self.settings.auth {
            Auth::SymmetricKey => {
                self.phase = Phase::AwaitCredentials;
                self.callouts.push_back(Callout::Credentials(self.ticket()));
            }
            Auth::X509 => self.connect_with(now, None),
        }
    }

    fn connect_with(&mut self, now: Instant, password: Option<Secret>) {
        let Some(registration_id) = self.registration_id.clone() else {
            return;
        };
        self.net.push_back(NetAction::Connect);
        self.link_up = true;
        let username = dps::username::username(
            &self.settings.scope,
            &registration_id,
            &self.settings.api_version,
            dps::CLIENT_VERSION,
        );
        let mut connect = Connect::new(registration_id);
        connect.keep_alive = self.settings.keep_alive;
        connect.clean_session = true;
        connect.set_login(
            username,
            password.as_ref().map(Secret::expose).unwrap_or_default(),
        );
        self.send(now, Packet::Connect(connect));
        let pkid = self.next_pkid;
        self.next_pkid = if pkid >= u16::MAX - 1 { 1 } else { pkid + 1 };
        let mut subscribe = Subscribe::new(dps::RESPONSE_FILTER, QoS::AtLeastOnce);
        subscribe.pkid = pkid;
        self.send(now, Packet::Subscribe(subscribe));
        self.ping_sent = None;
        self.phase = Phase::Handshake {
            since: now,
            stage: Stage::ConnAck {
                subscribe_pkid: pkid,
            },
        };
    }

    fn send(&mut self, now: Instant, packet: Packet) {
        self.last_tx = Some(now);
        self.emit(packet);
    }

    /// Queues a packet without touching the keep-alive clock (the last one on a connection).
    fn emit(&mut self, packet: Packet) {
        if self.trace {
            trace!(&self.context, "-> {}", describe(&packet));
        }
        self.net.push_back(NetAction::Send(packet));
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

    /// A transient fault is retried within the budget; anything else takes the error path.
    fn fault(&mut self, now: Instant, error: Error) {
        if matches!(self.phase, Phase::Closed | Phase::Down) {
            return;
        }
        self.drop_link(false);
        if !error.is_transient() {
            return self.fail(error);
        }
        let policy = &self.settings.retry;
        let faults = self.faults.get_or_insert(Faults {
            since: now,
            attempts: 0,
        });
        faults.attempts += 1;
        let elapsed = now.saturating_duration_since(faults.since);
        if faults.attempts > policy.max_attempts || elapsed >= policy.max_time {
            let attempts = faults.attempts - 1;
            return self.fail(Error::RetryBudgetSpent {
                attempts,
                elapsed,
                last: Box::new(error),
            });
        }
        // The last attempt starts no later than the end of the time budget, so the error path
        // comes at most one connection attempt after it, not a whole backoff (up to 30 s) later.
        let delay = policy
            .delay(faults.attempts, self.rng.f64())
            .min(policy.max_time.saturating_sub(elapsed));
        info!(
            &self.context,
            "{error}; reconnecting in {:.2} s (attempt {} of {})",
            delay.as_secs_f64(),
            faults.attempts,
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
    fn fail(&mut self, error: Error) {
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
        self.callouts.push_back(Callout::Failed);
    }
}

fn connack_code(code: ConnectReturnCode) -> u8 {
    match code {
        ConnectReturnCode::Success => 0,
        ConnectReturnCode::RefusedProtocolVersion => 1,
        ConnectReturnCode::BadClientId => 2,
        ConnectReturnCode::ServiceUnavailable => 3,
        ConnectReturnCode::BadUserNamePassword => 4,
        ConnectReturnCode::NotAuthorized => 5,
    }
}

/// One trace line's worth of a packet: type, topic, sizes; never a password or a body.
pub fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Connect(c) => {
            let (user, password) = match &c.login {
                Some(l) => (l.username.as_str(), l.password.len()),
                None => ("", 0),
            };
            let password = match password {
                0 => "none".to_owned(),
                n => format!("<redacted {n} bytes>"),
            };
            format!(
                "CONNECT client_id={:?} username={user:?} password={password} keep_alive={} clean_session={} ({} bytes)",
                c.client_id,
                c.keep_alive,
                c.clean_session,
                packet.size()
            )
        }
        Packet::ConnAck(a) => format!("CONNACK code={:?}", a.code),
        Packet::Subscribe(s) => {
            let filters: Vec<_> = s
                .filters
                .iter()
                .map(|f| format!("{} qos{}", f.path, f.qos as u8))
                .collect();
            format!("SUBSCRIBE pkid={} {}", s.pkid, filters.join(", "))
        }
        Packet::SubAck(s) => format!("SUBACK pkid={} codes={:?}", s.pkid, s.return_codes),
        Packet::Publish(p) => format!(
            "PUBLISH qos{} pkid={} topic={:?} payload {} bytes",
            p.qos as u8,
            p.pkid,
            p.topic,
            p.payload.len()
        ),
        Packet::PubAck(a) => format!("PUBACK pkid={}", a.pkid),
        Packet::PingReq => "PINGREQ".to_owned(),
        Packet::PingResp => "PINGRESP".to_owned(),
        Packet::Disconnect => "DISCONNECT".to_owned(),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}
