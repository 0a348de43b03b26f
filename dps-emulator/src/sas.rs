//! Shared access signatures, as DPS checks them for symmetric-key devices.
//!
//! Token: `SharedAccessSignature sr=<url-encoded "<scope>/registrations/<regid>">&sig=<url-encoded
//! base64(HMAC-SHA256(base64-decoded key, "<sr>\n<expiry>"))>&se=<expiry>&skn=registration`.
//! The string signed is the url-encoded `sr` exactly as it is sent.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Like JavaScript's `encodeURIComponent` / Python's `quote(safe="")`: only unreserved characters
/// stay as they are.
const COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Url-encodes one query component the way the Azure SDKs do.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn hmac_b64(key_b64: &str, message: &[u8]) -> Option<String> {
    let key = B64.decode(key_b64.trim()).ok()?;
    let mut mac = HmacSha256::new_from_slice(&key).ok()?;
    mac.update(message);
    Some(B64.encode(mac.finalize().into_bytes()))
}

/// The resource a device's token must name: `<scope>/registrations/<regid>`.
pub fn resource(scope: &str, regid: &str) -> String {
    format!("{scope}/registrations/{regid}")
}

/// A SAS token for `regid` signed with `key_b64` (a base64 key), valid until `expiry_unix`.
/// Returns an empty signature if the key is not valid base64 (the token will then be refused).
pub fn token(scope: &str, regid: &str, key_b64: &str, expiry_unix: u64) -> String {
    let sr = url_encode(&resource(scope, regid));
    let sig = hmac_b64(key_b64, format!("{sr}\n{expiry_unix}").as_bytes()).unwrap_or_default();
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry_unix}&skn=registration",
        url_encode(&sig)
    )
}

/// The device key of a group (enrollment group) member:
/// base64(HMAC-SHA256(base64-decoded group key, registration id)).
/// Returns an empty string if the group key is not valid base64.
pub fn derive_device_key(group_key_b64: &str, regid: &str) -> String {
    hmac_b64(group_key_b64, regid.as_bytes()).unwrap_or_default()
}

/// A parsed SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `sr` as sent (url-encoded); this is the string that was signed.
    pub sr_raw: String,
    /// `sr` after url-decoding.
    pub sr: String,
    /// `sig` after url-decoding (base64 text).
    pub sig: String,
    /// `se`: expiry, seconds since the Unix epoch.
    pub se: u64,
    /// `skn`, when present.
    pub skn: Option<String>,
}

/// Why a token was refused; the text goes into the emulator's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasError {
    /// Not `SharedAccessSignature k=v&k=v...`, or `sr`/`sig`/`se` missing or malformed.
    Malformed(String),
    /// `sr` names another resource.
    WrongResource { expected: String, got: String },
    /// `se` is in the past.
    Expired { se: u64, now: u64 },
    /// The signature matches none of the keys.
    BadSignature,
    /// No key is configured for this registration id (no individual key, no group key).
    NoKey,
}

impl std::fmt::Display for SasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SasError::Malformed(why) => write!(f, "SAS token malformed: {why}"),
            SasError::WrongResource { expected, got } => {
                write!(f, "SAS token sr is {got:?}, expected {expected:?}")
            }
            SasError::Expired { se, now } => {
                write!(f, "SAS token expired (se={se}, now={now})")
            }
            SasError::BadSignature => write!(
                f,
                "SAS signature matches neither the individual key nor any group key"
            ),
            SasError::NoKey => write!(
                f,
                "no symmetric key configured for this registration id (no individual or group key)"
            ),
        }
    }
}

/// Parses a token; field order is free, `skn` optional.
pub fn parse(token: &str) -> Result<Parsed, SasError> {
    let rest = token
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .ok_or_else(|| {
            SasError::Malformed("does not start with 'SharedAccessSignature '".into())
        })?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in rest.split('&') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| SasError::Malformed(format!("field {field:?} has no '='")))?;
        match k {
            "sr" => sr = Some(v.to_string()),
            "sig" => sig = Some(v.to_string()),
            "se" => se = Some(v.to_string()),
            "skn" => skn = Some(v.to_string()),
            _ => {}
        }
    }
    let sr_raw = sr.ok_or_else(|| SasError::Malformed("no sr".into()))?;
    let sig = sig.ok_or_else(|| SasError::Malformed("no sig".into()))?;
    let se = se.ok_or_else(|| SasError::Malformed("no se".into()))?;
    let se: u64 = se
        .parse()
        .map_err(|_| SasError::Malformed(format!("se {se:?} is not a number")))?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| SasError::Malformed("not valid UTF-8 after url-decoding".into()))
    };
    Ok(Parsed {
        sr: decode(&sr_raw)?,
        sig: decode(&sig)?,
        sr_raw,
        se,
        skn: skn.map(|s| decode(&s)).transpose()?,
    })
}

/// Checks `token` for `regid`: resource (case-insensitive, after url-decoding), expiry against
/// `now_unix`, then the signature against the individual key (if any) and each group key's
/// derived device key.
pub fn verify(
    token: &str,
    scope: &str,
    regid: &str,
    individual_key: Option<&str>,
    group_keys: &[String],
    now_unix: u64,
) -> Result<(), SasError> {
    let p = parse(token)?;
    let expected = resource(scope, regid);
    if !p.sr.eq_ignore_ascii_case(&expected) {
        return Err(SasError::WrongResource {
            expected,
            got: p.sr,
        });
    }
    if p.se <= now_unix {
        return Err(SasError::Expired {
            se: p.se,
            now: now_unix,
        });
    }
    let mut keys: Vec<String> = individual_key.map(str::to_string).into_iter().collect();
    keys.extend(group_keys.iter().map(|g| derive_device_key(g, regid)));
    keys.retain(|k| !k.is_empty());
    if keys.is_empty() {
        return Err(SasError::NoKey);
    }
    // The signer signs the url-encoded sr it sends; accept our canonical encoding too so a
    // client that encodes with lower-case hex digits is not refused for that alone.
    let canonical = url_encode(&p.sr);
    let signed_forms = [p.sr_raw.as_str(), canonical.as_str()];
    for key in &keys {
        for sr in signed_forms {
            if let Some(sig) = hmac_b64(key, format!("{sr}\n{}", p.se).as_bytes()) {
                if sig == p.sig {
                    return Ok(());
                }
            }
        }
    }
    Err(SasError::BadSignature)
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5";

    #[test]
    fn token_has_the_sdk_shape() {
        let t = token("0ne00000000", "dev1", KEY, 2000000000);
        assert!(t.starts_with("SharedAccessSignature sr=0ne00000000%2Fregistrations%2Fdev1&sig="));
        assert!(t.ends_with("&se=2000000000&skn=registration"));
        // known answer, computed with Python's hmac and urllib.parse.quote(safe="")
        assert!(t.contains("&sig=0nP6jBbniwMo3LrNq9BXE5wS52lSg%2FnuQstowIzlUIU%3D&"));
    }

    #[test]
    fn token_verifies_and_fields_may_be_reordered() {
        let t = token("0ne00000000", "dev1", KEY, 2000000000);
        assert_eq!(verify(&t, "0ne00000000", "dev1", Some(KEY), &[], 1), Ok(()));
        let p = parse(&t).unwrap();
        let reordered = format!(
            "SharedAccessSignature se={}&sig={}&sr={}",
            p.se,
            url_encode(&p.sig),
            p.sr_raw
        );
        // sr and scope compare case-insensitively
        assert_eq!(
            verify(&reordered, "0ne00000000", "DEV1", Some(KEY), &[], 1),
            Ok(())
        );
        assert_eq!(
            verify(&reordered, "0NE00000000", "dev1", Some(KEY), &[], 1),
            Ok(())
        );
    }

    #[test]
    fn expired_wrong_key_wrong_resource() {
        let t = token("s", "dev1", KEY, 100);
        assert!(matches!(
            verify(&t, "s", "dev1", Some(KEY), &[], 100),
            Err(SasError::Expired { .. })
        ));
        let other = "b3RoZXIta2V5";
        let t = token("s", "dev1", other, 1000);
        assert_eq!(
            verify(&t, "s", "dev1", Some(KEY), &[], 1),
            Err(SasError::BadSignature)
        );
        let t = token("s", "dev2", KEY, 1000);
        assert!(matches!(
            verify(&t, "s", "dev1", Some(KEY), &[], 1),
            Err(SasError::WrongResource { .. })
        ));
        assert_eq!(verify(&t, "s", "dev2", None, &[], 1), Err(SasError::NoKey));
        assert!(matches!(
            verify("garbage", "s", "dev2", Some(KEY), &[], 1),
            Err(SasError::Malformed(_))
        ));
        assert!(matches!(
            verify(
                "SharedAccessSignature sr=a&se=x&sig=b",
                "s",
                "d",
                Some(KEY),
                &[],
                1
            ),
            Err(SasError::Malformed(_))
        ));
    }

    #[test]
    fn group_key_derivation() {
        // known answer, computed with Python's hmac/hashlib for the same inputs
        let dk = derive_device_key(KEY, "dev1");
        assert_eq!(dk, "4EOFSBb0bNgm6DYZVXkykQmC4Qo+QcXyeXql2FOtTA4=");
        let t = token("s", "dev1", &dk, 1000);
        assert_eq!(verify(&t, "s", "dev1", None, &[KEY.to_string()], 1), Ok(()));
        assert_eq!(derive_device_key("%%%", "dev1"), "");
    }
}
