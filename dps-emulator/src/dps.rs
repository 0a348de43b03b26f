//! The DPS protocol as it appears on MQTT: request topics in, reply topics and bodies out.
//! Pure functions; no I/O.

use crate::scenario::Final;
use serde_json::{json, Map, Value};

/// The only subscription DPS supports.
pub const REPLY_FILTER: &str = "$dps/registrations/res/#";
const REGISTER_PREFIX: &str = "$dps/registrations/PUT/iotdps-register/?";
const POLL_PREFIX: &str = "$dps/registrations/GET/iotdps-get-operationstatus/?";

/// A request a device published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `$dps/registrations/PUT/iotdps-register/?$rid=<rid>`
    Register {
        /// `$rid`, verbatim.
        rid: String,
    },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=<rid>&operationId=<id>`
    Poll {
        /// `$rid`, verbatim.
        rid: String,
        /// `operationId`, verbatim.
        operation_id: String,
    },
}

impl Request {
    /// The request's `$rid`.
    pub fn rid(&self) -> &str {
        match self {
            Request::Register { rid } | Request::Poll { rid, .. } => rid,
        }
    }
}

/// The CONNECT username: `<scope>/registrations/<regid>/api-version=<v>[&ClientVersion=<ua>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// The ID scope.
    pub scope: String,
    /// The registration id.
    pub regid: String,
    /// `api-version`.
    pub api_version: String,
    /// `ClientVersion` (the user agent), as sent.
    pub client_version: Option<String>,
}

/// Parses a CONNECT username.
pub fn parse_username(username: &str) -> Result<Username, String> {
    let shape = "expected <scope>/registrations/<regid>/api-version=<v>[&ClientVersion=<ua>]";
    let (scope, rest) = username
        .split_once("/registrations/")
        .ok_or_else(|| format!("username {username:?}: {shape}"))?;
    let (regid, query) = rest
        .split_once("/api-version=")
        .ok_or_else(|| format!("username {username:?}: {shape}"))?;
    let (api_version, more) = query.split_once('&').unwrap_or((query, ""));
    if scope.is_empty() || regid.is_empty() || regid.contains('/') || api_version.is_empty() {
        return Err(format!("username {username:?}: {shape}"));
    }
    let params = query_params(more);
    Ok(Username {
        scope: scope.to_string(),
        regid: regid.to_string(),
        api_version: api_version.to_string(),
        client_version: param(&params, "ClientVersion").map(str::to_string),
    })
}

/// Splits `a=1&b=2` into pairs; parameters may come in any order.
pub fn query_params(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn param<'a>(params: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Recognises a request topic.
pub fn parse_request_topic(topic: &str) -> Result<Request, String> {
    if let Some(q) = topic.strip_prefix(REGISTER_PREFIX) {
        let params = query_params(q);
        let rid = param(&params, "$rid").ok_or("register topic without $rid")?;
        return Ok(Request::Register {
            rid: rid.to_string(),
        });
    }
    if let Some(q) = topic.strip_prefix(POLL_PREFIX) {
        let params = query_params(q);
        let rid = param(&params, "$rid").ok_or("poll topic without $rid")?;
        let op = param(&params, "operationId")
            .filter(|v| !v.is_empty())
            .ok_or("poll topic without operationId")?;
        return Ok(Request::Poll {
            rid: rid.to_string(),
            operation_id: op.to_string(),
        });
    }
    Err(format!("not a DPS request topic: {topic:?}"))
}

/// `$dps/registrations/res/<status>/?$rid=<rid>[&retry-after=<s>]`; with `reordered`,
/// `retry-after` comes first.
pub fn reply_topic(status: u16, rid: &str, retry_after: Option<u32>, reordered: bool) -> String {
    match (retry_after, reordered) {
        (None, _) => format!("$dps/registrations/res/{status}/?$rid={rid}"),
        (Some(s), false) => format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={s}"),
        (Some(s), true) => format!("$dps/registrations/res/{status}/?retry-after={s}&$rid={rid}"),
    }
}

/// What a register body asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegisterBody {
    /// `payload`, to echo in the assignment.
    pub payload: Option<Value>,
    /// `csr`: a base64 DER PKCS#10 request (api-version 2025-07-01-preview and later).
    pub csr: Option<String>,
}

/// Reads the register body: `{"registrationId":"<id>"[,"payload":<json>][,"csr":"<b64>"]}`.
/// An empty body is accepted.
pub fn parse_register_body(body: &[u8], regid: &str) -> Result<RegisterBody, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(RegisterBody::default());
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("register body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("register body is not a JSON object")?;
    match obj.get("registrationId") {
        None => {}
        Some(Value::String(id)) if id == regid => {}
        Some(other) => {
            return Err(format!(
                "registrationId {other} in the body differs from the connection's {regid:?}"
            ))
        }
    }
    let csr = match obj.get("csr") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(other) => return Err(format!("csr must be a base64 string, not {other}")),
    };
    Ok(RegisterBody {
        payload: obj.get("payload").filter(|p| !p.is_null()).cloned(),
        csr,
    })
}

/// Does a register body carry `csr`? (For the timeline: what went over the wire.)
pub fn body_has_csr(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("csr")))
        .unwrap_or(false)
}

/// A new operation id, shaped like the service's (`4.<hex>.<uuid>`).
pub fn new_operation_id() -> String {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    format!(
        "4.{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}.{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        uuid::Uuid::new_v4()
    )
}

/// Now, RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// `{"errorCode":…,"trackingId":"<uuid>","message":"…","timestampUtc":"…"}`
pub fn error_body(error_code: u32, message: &str) -> String {
    json!({
        "errorCode": error_code,
        "trackingId": uuid::Uuid::new_v4().to_string(),
        "message": message,
        "timestampUtc": now_rfc3339(),
    })
    .to_string()
}

/// `{"operationId":"…","status":"assigning"}`
pub fn assigning_body(operation_id: &str) -> String {
    json!({"operationId": operation_id, "status": "assigning"}).to_string()
}

/// What a finished operation needs to describe itself.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    /// The operation id.
    pub operation_id: &'a str,
    /// The registration id.
    pub regid: &'a str,
    /// When the register request arrived (RFC 3339).
    pub created: &'a str,
    /// The final state.
    pub final_status: &'a Final,
    /// `assignedHub`.
    pub assigned_hub: &'a str,
    /// `deviceId`.
    pub device_id: &'a str,
    /// `etag`.
    pub etag: &'a str,
    /// The register request's payload, echoed.
    pub payload: Option<&'a Value>,
    /// `connectionProfile` (`classic`, `mqttV5`, ...), when the scenario sets one.
    pub connection_profile: Option<&'a str>,
    /// `issuedCertificateChain` (base64 DER, leaf first) of an assignment.
    pub issued_chain: Option<&'a [String]>,
}

/// The 200 body of a finished operation.
pub fn final_body(o: &Outcome<'_>) -> String {
    let now = now_rfc3339();
    let mut rs = Map::new();
    rs.insert("registrationId".into(), o.regid.into());
    rs.insert("createdDateTimeUtc".into(), o.created.into());
    let status = match o.final_status {
        Final::Assigned => {
            rs.insert("assignedHub".into(), o.assigned_hub.into());
            rs.insert("deviceId".into(), o.device_id.into());
            rs.insert("status".into(), "assigned".into());
            if let Some(chain) = o.issued_chain {
                rs.insert("issuedCertificateChain".into(), chain.into());
            }
            "assigned"
        }
        Final::Failed {
            error_code,
            message,
        } => {
            rs.insert("status".into(), "failed".into());
            rs.insert("errorCode".into(), (*error_code).into());
            rs.insert("errorMessage".into(), message.as_str().into());
            "failed"
        }
        Final::Disabled => {
            rs.insert("status".into(), "disabled".into());
            "disabled"
        }
    };
    // every registrationState carries substatus and etag (the emulator never reprovisions)
    rs.insert("substatus".into(), "initialAssignment".into());
    rs.insert("lastUpdatedDateTimeUtc".into(), now.into());
    rs.insert("etag".into(), o.etag.into());
    if let Some(p) = o.connection_profile {
        rs.insert("connectionProfile".into(), p.into());
    }
    if let (Final::Assigned, Some(p)) = (o.final_status, o.payload) {
        rs.insert("payload".into(), p.clone());
    }
    json!({
        "operationId": o.operation_id,
        "status": status,
        "registrationState": Value::Object(rs),
    })
    .to_string()
}

/// An etag value, opaque to devices.
pub fn new_etag() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\"{}\"", uuid::Uuid::new_v4()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let u = parse_username(
            "0ne00000000/registrations/dev1/api-version=2021-06-01&ClientVersion=azure-iot%2F1.0",
        )
        .unwrap();
        assert_eq!(u.scope, "0ne00000000");
        assert_eq!(u.regid, "dev1");
        assert_eq!(u.api_version, "2021-06-01");
        assert_eq!(u.client_version.as_deref(), Some("azure-iot%2F1.0"));
        let u = parse_username("s/registrations/d/api-version=2019-03-31").unwrap();
        assert_eq!(u.client_version, None);
        for bad in [
            "",
            "s/registrations/d",
            "s/registrations//api-version=1",
            "/registrations/d/api-version=1",
            "s/registrations/d/api-version=",
            "s/devices/d/api-version=1",
        ] {
            assert!(parse_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_topics() {
        assert_eq!(
            parse_request_topic("$dps/registrations/PUT/iotdps-register/?$rid=1"),
            Ok(Request::Register { rid: "1".into() })
        );
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=4.a.b&$rid=x-y"
            ),
            Ok(Request::Poll {
                rid: "x-y".into(),
                operation_id: "4.a.b".into()
            })
        );
        assert!(parse_request_topic("$dps/registrations/PUT/iotdps-register/?rid=1").is_err());
        assert!(
            parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1")
                .is_err()
        );
        assert!(parse_request_topic("devices/x/messages").is_err());
    }

    #[test]
    fn reply_topics() {
        assert_eq!(
            reply_topic(200, "7", None, false),
            "$dps/registrations/res/200/?$rid=7"
        );
        assert_eq!(
            reply_topic(202, "7", Some(3), false),
            "$dps/registrations/res/202/?$rid=7&retry-after=3"
        );
        assert_eq!(
            reply_topic(202, "1", Some(3), true),
            "$dps/registrations/res/202/?retry-after=3&$rid=1"
        );
    }

    #[test]
    fn register_bodies() {
        assert_eq!(parse_register_body(b"", "d"), Ok(RegisterBody::default()));
        assert_eq!(
            parse_register_body(br#"{"registrationId":"d"}"#, "d"),
            Ok(RegisterBody::default())
        );
        assert_eq!(
            parse_register_body(br#"{"registrationId":"d","payload":{"k":1}}"#, "d"),
            Ok(RegisterBody {
                payload: Some(json!({"k":1})),
                csr: None
            })
        );
        assert_eq!(
            parse_register_body(br#"{"registrationId":"d","csr":"MII"}"#, "d"),
            Ok(RegisterBody {
                payload: None,
                csr: Some("MII".into())
            })
        );
        assert!(parse_register_body(br#"{"registrationId":"d","csr":1}"#, "d").is_err());
        assert!(body_has_csr(br#"{"registrationId":"d","csr":"MII"}"#));
        assert!(!body_has_csr(br#"{"registrationId":"d"}"#));
        assert!(!body_has_csr(b"csr"));
        assert!(parse_register_body(br#"{"registrationId":"e"}"#, "d").is_err());
        assert!(parse_register_body(b"{", "d").is_err());
        assert!(parse_register_body(b"[1]", "d").is_err());
    }

    #[test]
    fn bodies_have_the_service_shape() {
        let e: Value = serde_json::from_str(&error_body(401002, "nope")).unwrap();
        assert_eq!(e["errorCode"], 401002);
        assert!(e["trackingId"].as_str().unwrap().len() == 36);
        assert!(e["timestampUtc"].as_str().unwrap().ends_with('Z'));
        let payload = json!({"modelId":"dtmi:x;1"});
        let fin = Final::Assigned;
        let o = Outcome {
            operation_id: "4.a.b",
            regid: "d",
            created: "c",
            final_status: &fin,
            assigned_hub: "h",
            device_id: "dd",
            etag: "e",
            payload: Some(&payload),
            connection_profile: None,
            issued_chain: None,
        };
        let v: Value = serde_json::from_str(&final_body(&o)).unwrap();
        assert_eq!(v["status"], "assigned");
        assert_eq!(v["registrationState"]["assignedHub"], "h");
        assert_eq!(v["registrationState"]["deviceId"], "dd");
        assert_eq!(v["registrationState"]["substatus"], "initialAssignment");
        assert_eq!(v["registrationState"]["payload"], payload);
        assert_eq!(v["registrationState"]["etag"], "e");
        assert!(v["registrationState"].get("connectionProfile").is_none());
        assert!(v["registrationState"]
            .get("issuedCertificateChain")
            .is_none());
        let chain = ["bGVhZg==".to_string(), "aW50".to_string()];
        let v: Value = serde_json::from_str(&final_body(&Outcome {
            connection_profile: Some("mqttV5"),
            issued_chain: Some(&chain),
            ..o.clone()
        }))
        .unwrap();
        assert_eq!(v["registrationState"]["connectionProfile"], "mqttV5");
        assert_eq!(
            v["registrationState"]["issuedCertificateChain"],
            json!(["bGVhZg==", "aW50"])
        );
        let fin = Final::Failed {
            error_code: 400209,
            message: "m".into(),
        };
        let v: Value = serde_json::from_str(&final_body(&Outcome {
            final_status: &fin,
            payload: None,
            ..o.clone()
        }))
        .unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["registrationState"]["errorCode"], 400209);
        assert_eq!(v["registrationState"]["substatus"], "initialAssignment");
        assert_eq!(v["registrationState"]["etag"], "e");
        assert!(v["registrationState"].get("assignedHub").is_none());
        let fin = Final::Disabled;
        let v: Value = serde_json::from_str(&final_body(&Outcome {
            final_status: &fin,
            ..o
        }))
        .unwrap();
        assert_eq!(v["status"], "disabled");
    }
}
