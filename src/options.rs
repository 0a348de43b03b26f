//! The option names `set_option` understands, the C type each value points to, and their effect.
//! The C boundary reads the value by [`Kind`]; everything else happens here.

use std::time::Duration;

use crate::dps::csr::Csr;
use crate::error::Error;

/// The C type an option's `const void* value` points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `const uint32_t*`
    U32,
    /// `const int*`
    Int,
    /// `const bool*`
    Bool,
    /// `const char*` (NUL-terminated)
    Str,
    /// `const HTTP_PROXY_OPTIONS*`
    Proxy,
    /// `const PROV_MQTT_REGISTRATION_INFO_HOOK*` (NULL removes it)
    Hook,
}

/// A known option with its value read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    ReplyTimeout(Duration),
    RetryMaxAttempts(u32),
    RetryMaxTime(Duration),
    RetryInitialDelay(Duration),
    KeepAlive(u16),
    MinTls13(bool),
    Trace(bool),
    TrustedCerts(String),
    /// None removes it.
    Csr(Option<Csr>),
    /// None removes the override.
    ApiVersion(Option<String>),
    /// A registration info hook is set (true) or removed.
    ReportInfo(bool),
}

/// Every option name and its value type. What each does is the README's options table (a test
/// checks that it lists exactly these, with these C types).
pub const OPTIONS: &[(&str, Kind)] = &[
    ("reply_timeout_secs", Kind::U32),
    ("retry_max_attempts", Kind::U32),
    ("retry_max_secs", Kind::U32),
    ("retry_initial_ms", Kind::U32),
    ("keepalive", Kind::Int),
    ("tls_version", Kind::Int),
    ("logtrace", Kind::Bool),
    ("TrustedCerts", Kind::Str),
    ("proxy_data", Kind::Proxy),
    ("certificate_signing_request", Kind::Str),
    ("api_version", Kind::Str),
    ("registration_info_hook", Kind::Hook),
];

/// Options whose value may be NULL: it removes what was set.
pub fn nullable(name: &str) -> bool {
    matches!(
        name,
        "certificate_signing_request" | "api_version" | "registration_info_hook"
    )
}

/// Checks a string value (None: NULL, for the [`nullable`] options).
pub fn text(name: &str, value: Option<&str>) -> Result<Setting, Error> {
    Ok(match (name, value) {
        ("TrustedCerts", Some(pem)) => Setting::TrustedCerts(pem.to_owned()),
        ("certificate_signing_request", None) => Setting::Csr(None),
        ("certificate_signing_request", Some(text)) => {
            Setting::Csr(Some(Csr::parse(text).map_err(|e| {
                Error::InvalidArgument {
                    what: "certificate_signing_request",
                    why: e.to_string(),
                }
            })?))
        }
        ("api_version", None) => Setting::ApiVersion(None),
        ("api_version", Some(v)) => {
            let bad = |why: String| Error::InvalidArgument {
                what: "api_version",
                why,
            };
            if v.is_empty() || v.len() > crate::dps::MAX_ID_LEN {
                return Err(bad(format!(
                    "must be 1 to {} characters, is {}",
                    crate::dps::MAX_ID_LEN,
                    v.len()
                )));
            }
            // it goes into the user name's query string as is
            if let Some(c) = v
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
            {
                return Err(bad(format!(
                    "{v:?} has {c:?}: use letters, digits, '-' and '.'"
                )));
            }
            Setting::ApiVersion(Some(v.to_owned()))
        }
        _ => {
            return Err(Error::InvalidArgument {
                what: "option_name",
                why: format!("{name:?} takes no string"),
            })
        }
    })
}

/// The value type of a known option name.
pub fn kind(name: &str) -> Option<Kind> {
    OPTIONS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// The kind of value option `name` takes, and whether it may be NULL; an unknown name, or NULL
/// where a value is needed, is refused with the list of supported names or the reason.
pub fn check(name: &str, value_is_null: bool) -> Result<Kind, Error> {
    let kind = kind(name).ok_or_else(|| Error::InvalidArgument {
        what: "option_name",
        why: format!(
            "{name:?} is not supported (supported: {})",
            OPTIONS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    if value_is_null && !nullable(name) {
        return Err(Error::InvalidArgument {
            what: "value",
            why: format!("is NULL for {name:?}"),
        });
    }
    Ok(kind)
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, Error> {
    match v >= lo && v <= hi {
        true => Ok(v),
        false => Err(Error::InvalidArgument {
            what: name,
            why: format!("{v} is outside {lo}..={hi}"),
        }),
    }
}

/// Checks a numeric value against its option's range.
pub fn number(name: &str, value: i64) -> Result<Setting, Error> {
    let secs = |v: i64| Duration::from_secs(v as u64);
    Ok(match name {
        "reply_timeout_secs" => {
            Setting::ReplyTimeout(secs(range("reply_timeout_secs", value, 1, 3600)?))
        }
        "retry_max_attempts" => {
            Setting::RetryMaxAttempts(range("retry_max_attempts", value, 0, 100)? as u32)
        }
        "retry_max_secs" => Setting::RetryMaxTime(secs(range("retry_max_secs", value, 1, 86400)?)),
        "retry_initial_ms" => Setting::RetryInitialDelay(Duration::from_millis(range(
            "retry_initial_ms",
            value,
            1,
            60000,
        )? as u64)),
        "keepalive" => Setting::KeepAlive(range("keepalive", value, 0, 65535)? as u16),
        "tls_version" => match value {
            12 => Setting::MinTls13(false),
            13 => Setting::MinTls13(true),
            10 | 11 => {
                return Err(Error::InvalidArgument {
                    what: "tls_version",
                    why: format!(
                        "{value}: TLS 1.0 and 1.1 are not supported; TLS 1.2 is the floor"
                    ),
                })
            }
            _ => {
                return Err(Error::InvalidArgument {
                    what: "tls_version",
                    why: format!("{value}: use 12 or 13"),
                })
            }
        },
        _ => {
            return Err(Error::InvalidArgument {
                what: "option_name",
                why: format!("{name:?} takes no number"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's options table is the documentation of [`OPTIONS`]: the same names, each
    /// with the C type its [`Kind`] reads.
    #[test]
    fn the_readme_lists_exactly_these_options_with_their_c_types() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("### Options of `set_option`")
            .nth(1)
            .expect("the README has an options section");
        let rows: Vec<(String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| name"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').into(),
                    cells[2].trim_matches('`').into(),
                )
            })
            .collect();
        let c_type = |k: Kind| match k {
            Kind::U32 => "uint32_t*",
            Kind::Int => "int*",
            Kind::Bool => "bool*",
            Kind::Str => "const char*",
            Kind::Proxy => "HTTP_PROXY_OPTIONS*",
            Kind::Hook => "const PROV_MQTT_REGISTRATION_INFO_HOOK*",
        };
        let expected: Vec<(String, String)> = OPTIONS
            .iter()
            .map(|(n, k)| (n.to_string(), c_type(*k).to_string()))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn every_numeric_option_checks_its_range() {
        assert_eq!(
            number("reply_timeout_secs", 5).unwrap(),
            Setting::ReplyTimeout(Duration::from_secs(5))
        );
        assert!(number("reply_timeout_secs", 0).is_err());
        assert!(number("retry_max_attempts", 101).is_err());
        assert!(number("keepalive", -1).is_err());
        assert!(number("keepalive", 70000).is_err());
        assert_eq!(number("tls_version", 13).unwrap(), Setting::MinTls13(true));
        assert!(number("tls_version", 11)
            .unwrap_err()
            .to_string()
            .contains("TLS 1.2 is the floor"));
        assert!(number("logtrace", 1).is_err());
    }

    #[test]
    fn string_options_check_their_values() {
        assert_eq!(
            text("api_version", None).unwrap(),
            Setting::ApiVersion(None)
        );
        assert_eq!(
            text("api_version", Some("2021-06-01")).unwrap(),
            Setting::ApiVersion(Some("2021-06-01".into()))
        );
        assert!(text("api_version", Some("2021&x=1"))
            .unwrap_err()
            .to_string()
            .contains("'&'"));
        assert!(text("api_version", Some("")).is_err());
        assert_eq!(
            text("certificate_signing_request", None).unwrap(),
            Setting::Csr(None)
        );
        let e = text("certificate_signing_request", Some("not base64!"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate_signing_request"), "{e}");
        assert!(text("keepalive", Some("1")).is_err());
        assert!(nullable("registration_info_hook") && !nullable("TrustedCerts"));
    }

    #[test]
    fn names_are_known_with_their_types() {
        assert_eq!(kind("keepalive"), Some(Kind::Int));
        assert_eq!(kind("TrustedCerts"), Some(Kind::Str));
        assert_eq!(kind("CipherSuite"), None);
    }
}
