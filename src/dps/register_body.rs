//! What the library changes in the bodies `json_create_cb` produces when a CSR is set: the
//! register body gets `"csr"`, the operation-status body never carries it (the SDK reuses the
//! register JSON for the poll, and the service refuses a poll with `csr`), and the api-version
//! of the CONNECT user name is raised to the first one that issues certificates.

use serde_json::Value;

/// The first api-version under which DPS issues certificates (field.md §3).
pub const CSR_API_VERSION: &str = "2025-07-01-preview";

/// Why a CSR cannot be added to the register body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    NotJson(String),
    NotAnObject,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::NotJson(why) => write!(
                f,
                "cannot add the CSR to the register body from json_create_cb: it is not JSON ({why})"
            ),
            BodyError::NotAnObject => write!(
                f,
                "cannot add the CSR to the register body from json_create_cb: it is not a JSON object"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// The register body with `"csr": csr_base64` added. The caller's text is kept as it is (key
/// order, number precision, spacing): the member is written in before the closing brace. A body
/// that already has `"csr"` (the SDK's CSR branch adds it itself) is returned byte for byte.
pub fn with_csr(body: &[u8], csr_base64: &str) -> Result<Vec<u8>, BodyError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let object = value.as_object().ok_or(BodyError::NotAnObject)?;
    if object.contains_key("csr") {
        return Ok(body.to_vec());
    }
    // a JSON object's text ends with `}` (then only white space): the parse said so
    let close = body
        .iter()
        .rposition(|&b| b == b'}')
        .ok_or(BodyError::NotAnObject)?;
    let separator = if object.is_empty() { "" } else { "," };
    // base64 needs no JSON escaping
    let member = format!("{separator}\"csr\":\"{csr_base64}\"");
    let mut out = Vec::with_capacity(body.len() + member.len());
    out.extend_from_slice(&body[..close]);
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(&body[close..]);
    Ok(out)
}

/// The operation-status body without `"csr"`. Anything that is not a JSON object with `"csr"`
/// is returned untouched (the body is the caller's; only the key the service refuses goes; a
/// body that had it is written anew without it).
pub fn without_csr(body: Vec<u8>) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let removed = value
        .as_object_mut()
        .is_some_and(|object| object.remove("csr").is_some());
    match removed {
        true => serde_json::to_vec(&value).unwrap_or(body),
        false => body,
    }
}

/// The `YYYY-MM-DD` date that starts an api-version, as a comparable number.
fn date_of(api_version: &str) -> Option<u32> {
    let date = api_version.get(..10)?;
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let n = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())?
    };
    Some(n(y)? * 10_000 + n(m)? * 100 + n(d)?)
}

/// The api-version the CONNECT user name carries: `override_version` when given; with a CSR,
/// `given` if it is already [`CSR_API_VERSION`] or newer (by its date part; a `-preview` suffix
/// does not matter), else [`CSR_API_VERSION`]; `given` otherwise.
pub fn api_version<'a>(
    given: &'a str,
    has_csr: bool,
    override_version: Option<&'a str>,
) -> &'a str {
    if let Some(v) = override_version {
        return v;
    }
    if !has_csr {
        return given;
    }
    match (date_of(given), date_of(CSR_API_VERSION)) {
        (Some(g), Some(min)) if g >= min => given,
        _ => CSR_API_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_added_to_an_object_and_other_fields_kept() {
        let out = with_csr(br#"{"registrationId":"dev1","payload":{"a":1}}"#, "TUlJ").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["csr"], "TUlJ");
        assert_eq!(v["registrationId"], "dev1");
        assert_eq!(v["payload"]["a"], 1);
    }

    #[test]
    fn the_callers_text_is_kept_around_the_csr() {
        let body = br#"{ "z": 1, "registrationId": "dev1", "payload": {"big": 123456789012345678901234567890, "pi": 3.14159265358979323846264338327950288} }"#;
        let out = with_csr(body, "TUlJ").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        let kept = &body[..body.len() - 2];
        assert!(out.starts_with(kept), "{text}");
        assert!(text.ends_with(r#"} ,"csr":"TUlJ"}"#), "{text}");
        assert_eq!(
            with_csr(b" {} \n", "TUlJ").unwrap(),
            br#" {"csr":"TUlJ"} "#.iter().chain(b"\n").copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_body_that_has_csr_passes_byte_for_byte() {
        let body = br#"{ "registrationId" : "dev1", "csr": "theirs" }"#;
        assert_eq!(with_csr(body, "ours").unwrap(), body.to_vec());
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused_with_why() {
        assert_eq!(with_csr(b"[1]", "x"), Err(BodyError::NotAnObject));
        let e = with_csr(b"{nope", "x").unwrap_err();
        assert!(matches!(e, BodyError::NotJson(_)));
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn the_poll_body_loses_csr_only() {
        let out = without_csr(br#"{"registrationId":"dev1","csr":"TUlJ"}"#.to_vec());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"registrationId":"dev1"}));
        let untouched = br#"{ "registrationId" : "dev1" }"#.to_vec();
        assert_eq!(without_csr(untouched.clone()), untouched);
        assert_eq!(without_csr(b"not json".to_vec()), b"not json".to_vec());
    }

    #[test]
    fn api_version_is_raised_for_a_csr_only_when_older() {
        assert_eq!(api_version("2021-06-01", false, None), "2021-06-01");
        assert_eq!(api_version("2021-06-01", true, None), CSR_API_VERSION);
        assert_eq!(api_version("2019-03-31", true, None), CSR_API_VERSION);
        assert_eq!(api_version("2025-07-01", true, None), "2025-07-01");
        assert_eq!(
            api_version("2026-11-02-preview", true, None),
            "2026-11-02-preview"
        );
        assert_eq!(api_version("garbage", true, None), CSR_API_VERSION);
        assert_eq!(
            api_version("2026-11-02-preview", true, Some("2021-06-01")),
            "2021-06-01"
        );
        assert_eq!(api_version("2021-06-01", false, Some("x")), "x");
    }
}
