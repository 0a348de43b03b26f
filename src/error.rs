//! The one error type of the core, with the facts a device engineer needs, and the one place that
//! says whether a failure is worth another connection attempt.

use std::fmt;
use std::time::Duration;

use crate::dps::body::{PayloadError, ServiceError};
use crate::dps::chain::ChainError;
use crate::dps::register_body::BodyError;

/// Everything that can go wrong, in words that say what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A caller argument is unusable (which one, and why).
    InvalidArgument { what: &'static str, why: String },
    /// The call is not allowed in the handle's current state.
    InvalidState(String),
    /// A PEM text (certificate, key, trusted CA) could not be used.
    Pem { what: &'static str, why: String },
    /// An X.509 registration without a client certificate and key.
    MissingClientCertificate,
    /// A caller callback returned NULL where a value was required.
    CallbackReturnedNull(&'static str),
    /// The platform trust store could not be read.
    TrustStore(String),
    /// Name resolution or TCP connection failed.
    Connect { target: String, why: String },
    /// The TLS handshake failed; `why` names the reason (certificate not trusted, host name
    /// mismatch, expired, protocol version, client certificate rejected, …).
    Tls { why: String, transient: bool },
    /// The HTTP proxy refused the tunnel or misbehaved.
    Proxy { why: String, transient: bool },
    /// The WebSocket upgrade failed.
    WebSocket(String),
    /// The server refused the MQTT CONNECT (3, "server unavailable", is worth a retry).
    ConnAckRefused(u8),
    /// The server refused the subscription to the reply topic.
    SubAckRefused,
    /// The server broke MQTT (malformed packet, unexpected packet type).
    Protocol(String),
    /// A packet larger than the 96 KB DPS limit arrived.
    PacketTooLarge(usize),
    /// The connection closed under us.
    ConnectionLost(String),
    /// No answer within the reply timeout.
    Timeout {
        waiting_for: &'static str,
        after: Duration,
    },
    /// A reply payload that cannot be handed to the parser.
    Payload(PayloadError),
    /// DPS answered with an error (errorCode, trackingId, message).
    Service { status: u16, error: ServiceError },
    /// The parse callback's record says the registration did not succeed.
    RegistrationFailed(String),
    /// The assignment's `issuedCertificateChain` is not DER certificates, or is too large.
    IssuedChain(ChainError),
    /// The register body cannot carry the CSR.
    RegisterBody(BodyError),
    /// The retry budget is spent; `last` is what failed last.
    RetryBudgetSpent {
        attempts: u32,
        elapsed: Duration,
        last: Box<Error>,
    },
    /// A Rust panic was caught at the C boundary.
    Internal(String),
    /// A library thread could not start (EAGAIN from pthread_create: a thread or memory limit);
    /// tried again on the next connection attempt.
    ThreadStart { thread: &'static str, why: String },
}

impl Error {
    /// Worth another connection attempt (within the retry budget)?
    /// Authentication, configuration and certificate failures are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectionLost(_)
            | Error::Timeout { .. }
            | Error::WebSocket(_)
            | Error::ThreadStart { .. } => true,
            Error::Protocol(_) | Error::PacketTooLarge(_) => true,
            Error::ConnAckRefused(code) => *code == 3,
            Error::Tls { transient, .. } | Error::Proxy { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The DPS reply behind this failure: its status and account, when it was one.
    pub fn service(&self) -> Option<(u16, &ServiceError)> {
        match self {
            Error::Service { status, error } => Some((*status, error)),
            Error::RetryBudgetSpent { last, .. } => last.service(),
            _ => None,
        }
    }

    /// A failure of the device's own key or certificate (reported as `PROV_DEVICE_ERROR_KEY_FAIL`).
    pub fn is_key_failure(&self) -> bool {
        matches!(
            self,
            Error::MissingClientCertificate
                | Error::Pem {
                    what: "private key" | "client certificate",
                    ..
                }
        )
    }
}

fn connack_reason(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password (check the SAS token / scope id)",
        5 => "not authorized (check the registration id, the key or the certificate and its CN)",
        _ => "unknown reason",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument { what, why } => write!(f, "invalid argument {what}: {why}"),
            Error::InvalidState(why) => write!(f, "not allowed now: {why}"),
            Error::Pem { what, why } => write!(f, "cannot use the {what}: {why}"),
            Error::MissingClientCertificate => {
                write!(f, "X.509 registration without a client certificate and key (set them with x509_cert first)")
            }
            Error::CallbackReturnedNull(which) => write!(f, "the {which} callback returned NULL"),
            Error::TrustStore(why) => write!(f, "cannot load the platform trust store: {why}"),
            Error::Connect { target, why } => write!(f, "cannot connect to {target}: {why}"),
            Error::Tls { why, .. } => write!(f, "TLS handshake failed: {why}"),
            Error::Proxy { why, .. } => write!(f, "HTTP proxy: {why}"),
            Error::WebSocket(why) => write!(f, "WebSocket upgrade failed: {why}"),
            Error::ConnAckRefused(code) => write!(
                f,
                "CONNACK refused with code {code}: {}",
                connack_reason(*code)
            ),
            Error::SubAckRefused => write!(
                f,
                "SUBACK refused the subscription to $dps/registrations/res/#"
            ),
            Error::Protocol(why) => write!(f, "MQTT protocol error from the server: {why}"),
            Error::PacketTooLarge(n) => write!(
                f,
                "the server sent a packet over the 96 KB DPS limit ({n} bytes or more)"
            ),
            Error::ConnectionLost(why) => write!(f, "connection lost: {why}"),
            Error::Timeout { waiting_for, after } => {
                write!(
                    f,
                    "no {waiting_for} within {} s",
                    crate::log::Seconds(*after, 1)
                )
            }
            Error::Payload(e) => write!(f, "unusable reply: {e}"),
            Error::Service { status, error } => write!(f, "DPS replied {status}: {error}"),
            Error::RegistrationFailed(why) => write!(f, "registration failed: {why}"),
            Error::RetryBudgetSpent {
                attempts,
                elapsed,
                last,
            } => write!(
                f,
                "giving up after {attempts} retries over {} s; last error: {last}",
                crate::log::Seconds(*elapsed, 1)
            ),
            Error::IssuedChain(e) => write!(f, "unusable issued certificate chain: {e}"),
            Error::RegisterBody(e) => write!(f, "{e}"),
            Error::Internal(why) => write!(f, "internal error: {why}"),
            Error::ThreadStart { thread, why } => write!(
                f,
                "cannot start the library's {thread} thread ({why}): the process is at a thread \
                 or memory limit; tried again on the next connection attempt"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_config_failures_are_final() {
        for code in [1, 2, 4, 5] {
            assert!(!Error::ConnAckRefused(code).is_transient(), "{code}");
        }
        assert!(
            Error::ConnAckRefused(3).is_transient(),
            "server unavailable"
        );
        assert!(!Error::Tls {
            why: "certificate not trusted".into(),
            transient: false
        }
        .is_transient());
        assert!(!Error::Proxy {
            why: "407".into(),
            transient: false
        }
        .is_transient());
        assert!(!Error::SubAckRefused.is_transient());
        assert!(Error::ConnectionLost("eof".into()).is_transient());
        assert!(Error::Timeout {
            waiting_for: "reply",
            after: Duration::from_secs(30)
        }
        .is_transient());
    }

    #[test]
    fn connack_line_says_why() {
        assert!(Error::ConnAckRefused(5)
            .to_string()
            .contains("not authorized"));
    }
}
