//! What a reply body says, for diagnostics: the service's errorCode, trackingId and message,
//! from an error body or from a failed `registrationState`. The body itself goes to the caller's
//! parse callback untouched; this only reads it for the log line.

use serde_json::Value;

/// Why a payload cannot be handed to a C parser as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Larger than the DPS limit.
    TooLarge(usize),
    /// Contains a NUL byte, which would silently truncate the C string.
    EmbeddedNul(usize),
    /// Not UTF-8 (JSON must be).
    NotUtf8(usize),
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::TooLarge(n) => {
                write!(f, "reply payload of {n} bytes exceeds the 96 KB DPS limit")
            }
            PayloadError::EmbeddedNul(at) => {
                write!(f, "reply payload has a NUL byte at offset {at}")
            }
            PayloadError::NotUtf8(at) => write!(
                f,
                "reply payload is not UTF-8 (invalid byte at offset {at})"
            ),
        }
    }
}

/// Checks a reply payload can become a NUL-terminated C string without loss.
pub fn check_payload(payload: &[u8]) -> Result<&str, PayloadError> {
    if payload.len() > super::MAX_PACKET {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    if let Some(at) = payload.iter().position(|&b| b == 0) {
        return Err(PayloadError::EmbeddedNul(at));
    }
    std::str::from_utf8(payload).map_err(|e| PayloadError::NotUtf8(e.valid_up_to()))
}

/// The service's account of a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    pub error_code: Option<u64>,
    pub tracking_id: Option<String>,
    pub message: Option<String>,
}

impl ServiceError {
    /// Reads an error body (`{"errorCode":…,"trackingId":…,"message":…}`) or a final reply whose
    /// `status` is `failed`/`disabled`/`blacklisted` (`registrationState.errorCode`/`errorMessage`).
    /// None when the body carries no failure.
    pub fn from_body(body: &str) -> Option<ServiceError> {
        let v: Value = serde_json::from_str(body).ok()?;
        let state = v.get("registrationState");
        let pick = |key: &str| v.get(key).or_else(|| state.and_then(|s| s.get(key)));
        let error_code =
            pick("errorCode").and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
        let tracking_id = pick("trackingId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let message = pick("message")
            .or_else(|| pick("errorMessage"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let failed = matches!(
            v.get("status").and_then(Value::as_str),
            Some("failed" | "disabled" | "blacklisted")
        );
        (error_code.is_some() || failed).then_some(ServiceError {
            error_code,
            tracking_id,
            message,
        })
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.error_code {
            Some(code) => write!(f, "DPS errorCode {code}")?,
            None => write!(f, "DPS error")?,
        }
        if let Some(t) = &self.tracking_id {
            write!(f, " trackingId {t}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// The `status` field of an operation body, for the trace (`assigning`, `assigned`, …).
pub fn operation_status(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("status")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body() {
        let e = ServiceError::from_body(
            r#"{"errorCode":401002,"trackingId":"t-1","message":"CA certificate not found.","timestampUtc":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.error_code, Some(401002));
        assert_eq!(
            e.to_string(),
            "DPS errorCode 401002 trackingId t-1: CA certificate not found."
        );
    }

    #[test]
    fn failed_registration_state() {
        let e = ServiceError::from_body(
            r#"{"operationId":"o","status":"failed","registrationState":{"errorCode":400209,"errorMessage":"nope"}}"#,
        )
        .unwrap();
        assert_eq!(e.error_code, Some(400209));
        assert_eq!(e.message.as_deref(), Some("nope"));
    }

    #[test]
    fn success_bodies_are_not_errors() {
        assert_eq!(
            ServiceError::from_body(r#"{"operationId":"o","status":"assigning"}"#),
            None
        );
        assert_eq!(ServiceError::from_body("not json"), None);
    }

    #[test]
    fn payload_checks() {
        assert_eq!(check_payload(b"{}"), Ok("{}"));
        assert_eq!(check_payload(b"{\0}"), Err(PayloadError::EmbeddedNul(1)));
        assert_eq!(check_payload(b"{\xff}"), Err(PayloadError::NotUtf8(1)));
        let big = vec![b' '; crate::dps::MAX_PACKET + 1];
        assert_eq!(
            check_payload(&big),
            Err(PayloadError::TooLarge(crate::dps::MAX_PACKET + 1))
        );
    }
}
