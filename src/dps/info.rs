//! The registration details the LL client throws away, read from DPS replies for the
//! `registration_info_hook`: on an assignment the issued certificate chain (as PEM), the
//! connectionProfile, substatus and etag; on a failure the status, errorCode, trackingId and
//! message.

use serde_json::Value;

use super::body::ServiceError;
use super::chain::{self, ChainError};

/// What the hook reports for one registration outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationInfo {
    /// PEM, leaf first.
    pub issued_certificate_chain: Option<String>,
    pub connection_profile: Option<String>,
    pub substatus: Option<String>,
    pub etag: Option<String>,
    /// The status of the final reply; 0 when there was none.
    pub dps_status: u16,
    pub error_code: Option<u64>,
    pub tracking_id: Option<String>,
    pub error_message: Option<String>,
}

/// Reads an assignment reply. An `issuedCertificateChain` that is not base64 DER certificates,
/// or is over [`chain::MAX_CHAIN_PEM`] as PEM, is an error: the caller takes the error path.
pub fn assignment(status: u16, body: &str) -> Result<RegistrationInfo, ChainError> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let state = v.get("registrationState");
    let text = |key: &str| {
        state
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let issued = match state.and_then(|s| s.get("issuedCertificateChain")) {
        None | Some(Value::Null) => None,
        Some(c) => Some(chain::to_pem(c)?),
    };
    Ok(RegistrationInfo {
        issued_certificate_chain: issued,
        connection_profile: text("connectionProfile"),
        substatus: text("substatus"),
        etag: text("etag"),
        dps_status: status,
        ..RegistrationInfo::default()
    })
}

/// A failure: the service's account of it when the failure was a DPS reply.
pub fn failure(status: u16, error: Option<&ServiceError>) -> RegistrationInfo {
    RegistrationInfo {
        dps_status: status,
        error_code: error.and_then(|e| e.error_code),
        tracking_id: error.and_then(|e| e.tracking_id.clone()),
        error_message: error.and_then(|e| e.message.clone()),
        ..RegistrationInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_fields() {
        let info = assignment(
            200,
            r#"{"operationId":"o","status":"assigned","registrationState":{"registrationId":"d",
                "assignedHub":"h","deviceId":"d","status":"assigned","substatus":"initialAssignment",
                "etag":"\"e1\"","connectionProfile":"mqttV5"}}"#,
        )
        .unwrap();
        assert_eq!(info.connection_profile.as_deref(), Some("mqttV5"));
        assert_eq!(info.substatus.as_deref(), Some("initialAssignment"));
        assert_eq!(info.etag.as_deref(), Some("\"e1\""));
        assert_eq!(info.dps_status, 200);
        assert_eq!(info.issued_certificate_chain, None);
        assert_eq!(info.error_code, None);
    }

    #[test]
    fn absent_fields_are_none() {
        let info = assignment(200, r#"{"status":"assigned"}"#).unwrap();
        assert_eq!(
            info,
            RegistrationInfo {
                dps_status: 200,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_chain_that_is_not_der_is_an_error() {
        let e = assignment(
            200,
            r#"{"registrationState":{"issuedCertificateChain":["bm90IGRlcg=="]}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ChainError::NotACertificate(0, _)), "{e}");
        let e = assignment(
            200,
            r#"{"registrationState":{"issuedCertificateChain":"x"}}"#,
        )
        .unwrap_err();
        assert_eq!(e, ChainError::NotAnArray);
    }

    #[test]
    fn failure_fields() {
        let e = ServiceError::from_body(
            r#"{"errorCode":401002,"trackingId":"t-1","message":"CA certificate not found."}"#,
        )
        .unwrap();
        let info = failure(401, Some(&e));
        assert_eq!(info.dps_status, 401);
        assert_eq!(info.error_code, Some(401002));
        assert_eq!(info.tracking_id.as_deref(), Some("t-1"));
        assert_eq!(
            info.error_message.as_deref(),
            Some("CA certificate not found.")
        );
        assert_eq!(failure(0, None), RegistrationInfo::default());
    }
}
