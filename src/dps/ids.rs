//! The one place that checks the identifiers a CONNECT is built from: the registration id (the
//! MQTT client id and part of the user name), the ID scope and the api version.
#![forbid(unsafe_code)]

use super::MAX_ID_LEN;
use crate::error::Error;

/// At `create`: the scope and api version are required there, as in the SDK. Their length is
/// checked at [`check_open`], with the registration id, where the CONNECT is built.
pub fn check_create(scope: &str, api_version: &str) -> Result<(), Error> {
    not_empty("scope_id", scope)?;
    not_empty("api_version", api_version)
}

/// At `open`: everything the CONNECT carries. An over-long value cannot make a CONNECT that
/// fits the MQTT limits; without this check it was dropped on the I/O thread and the
/// registration failed later for a misleading reason (and every log line carried the whole id
/// as its context).
pub fn check_open(registration_id: &str, scope: &str, api_version: &str) -> Result<(), Error> {
    for (what, value) in [
        ("registration_id", registration_id),
        ("scope_id", scope),
        ("api_version", api_version),
    ] {
        not_empty(what, value)?;
        if value.len() > MAX_ID_LEN {
            return Err(Error::InvalidArgument {
                what,
                why: format!(
                    "is {} bytes long; DPS accepts at most {MAX_ID_LEN}",
                    value.len()
                ),
            });
        }
    }
    Ok(())
}

fn not_empty(what: &'static str, value: &str) -> Result<(), Error> {
    match value.is_empty() {
        true => Err(Error::InvalidArgument {
            what,
            why: "is empty".into(),
        }),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_over_long_values_are_named() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        let longest = "a".repeat(MAX_ID_LEN);
        assert!(check_create("0ne0001", "2021-06-01").is_ok());
        assert!(check_create("", "2021-06-01").is_err());
        assert!(check_create("0ne0001", "").is_err());
        assert!(
            check_create(&long, &long).is_ok(),
            "lengths are checked at open"
        );
        assert!(check_open(&longest, &longest, &longest).is_ok());
        for (r, s, a, what) in [
            ("", "s", "a", "registration_id"),
            (long.as_str(), "s", "a", "registration_id"),
            ("r", long.as_str(), "a", "scope_id"),
            ("r", "s", long.as_str(), "api_version"),
        ] {
            let e = check_open(r, s, a).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        let e = check_open(&long, "s", "a").unwrap_err().to_string();
        assert!(e.contains("129 bytes long; DPS accepts at most 128"), "{e}");
    }
}
