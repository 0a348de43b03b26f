//! The MQTT CONNECT user name DPS expects.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// `<scope>/registrations/<regid>/api-version=<api>&ClientVersion=<url-encoded version>`
pub fn username(
    scope: &str,
    registration_id: &str,
    api_version: &str,
    client_version: &str,
) -> String {
    let version = utf8_percent_encode(client_version, NON_ALPHANUMERIC).to_string();
    // '.' is unreserved in a URL: keep "1.15.0" readable as the SDK sends it.
    let version = version.replace("%2E", ".");
    format!(
        "{scope}/registrations/{registration_id}/api-version={api_version}&ClientVersion={version}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_sdk_shape() {
        assert_eq!(
            username("0ne0001", "dev1", "2021-06-01", "1.15.0"),
            "0ne0001/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0"
        );
    }

    #[test]
    fn encodes_the_client_version() {
        assert_eq!(
            username("s", "d", "v", "a b/1.0"),
            "s/registrations/d/api-version=v&ClientVersion=a%20b%2F1.0"
        );
    }
}
