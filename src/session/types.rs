//! The values that cross the session's edge (settings, callouts, network actions and events)
//! and the states it moves through.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::Packet;

use super::policy::RetryPolicy;
use crate::dps::csr::Csr;
use crate::dps::info::RegistrationInfo;
use crate::dps::register_body;
use crate::error::Error;
use crate::trace::Wire;

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
    /// `certificate_signing_request`: added to the register body; raises the api-version.
    pub csr: Option<Csr>,
    /// `api_version`: the CONNECT user name's api-version, whatever the CSR.
    pub api_version_override: Option<String>,
    /// A `registration_info_hook` is set: queue [`Callout::Info`] before each outcome.
    pub report_info: bool,
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
            csr: None,
            api_version_override: None,
            report_info: false,
        }
    }
}

impl Settings {
    /// The api-version the CONNECT user name carries (see [`register_body::api_version`]).
    pub fn connect_api_version(&self) -> &str {
        register_body::api_version(
            &self.api_version,
            self.csr.is_some(),
            self.api_version_override.as_deref(),
        )
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
pub struct Ticket(pub(super) u64);

/// A callback the caller's thread must run, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callout {
    /// `status_cb(status, retry_after)`.
    Status {
        status: ReplyStatus,
        retry_after: u32,
    },
    /// Call `reg_challenge_cb(NULL, 0, "registration")` and answer with
    /// [`super::Session::credentials`].
    Credentials(Ticket),
    /// Call `json_create_cb(NULL, NULL)` and answer with [`super::Session::payload`].
    Payload(Ticket),
    /// Call `json_parse_cb(json)` and answer with [`super::Session::parsed`].
    Parse { ticket: Ticket, json: String },
    /// `registration_info_hook(info)`: queued (when a hook is set) just before the outcome it
    /// describes; for an assignment, taken by the caller with
    /// [`super::Session::take_info`] between the parse and the data callback.
    Info(Box<RegistrationInfo>),
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
    /// Write this packet on the current connection (its `Debug` never shows a password).
    Send(Wire),
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
pub(super) enum Kind {
    Register,
    Poll,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Register => "register request",
            Kind::Poll => "operation status request",
        }
    }

    /// What a reply timeout says it waited for.
    pub(super) fn awaited(self) -> &'static str {
        match self {
            Kind::Register => "reply to the register request",
            Kind::Poll => "reply to the operation status request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
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
pub(super) enum Stage {
    ConnAck { subscribe_pkid: u16 },
    SubAck { pkid: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
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
