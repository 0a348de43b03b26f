//! The service address from the URI the caller gives `create`.

use crate::error::Error;

/// Host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal; the port defaults to the
    /// transport's (8883 or 443). A port in the URI lets a device reach a local DPS emulator.
    pub fn parse(uri: &str, default_port: u16) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::InvalidArgument {
            what: "uri",
            why: format!("{uri:?} {why}"),
        };
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(bad("is empty"));
        }
        if uri.contains("://") || uri.contains('/') || uri.chars().any(char::is_whitespace) {
            return Err(bad(
                "must be a host name with an optional :port, without a scheme or path",
            ));
        }
        let (host, port) = if let Some(rest) = uri.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("has text after ']'"))?,
                    ),
                ),
            }
        } else if uri.matches(':').count() > 1 {
            (uri, None) // a bare IPv6 literal
        } else {
            match uri.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (uri, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("has an invalid port"))?,
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let ok = [
            (
                "global.azure-devices-provisioning.net",
                "global.azure-devices-provisioning.net",
                8883,
            ),
            ("localhost:18883", "localhost", 18883),
            ("127.0.0.1", "127.0.0.1", 8883),
            ("[::1]:9000", "::1", 9000),
            ("[::1]", "::1", 8883),
            ("::1", "::1", 8883),
        ];
        for (uri, host, port) in ok {
            assert_eq!(
                Endpoint::parse(uri, 8883).unwrap(),
                Endpoint {
                    host: host.into(),
                    port
                },
                "{uri}"
            );
        }
    }

    #[test]
    fn refused_forms() {
        for uri in [
            "",
            " ",
            "mqtts://host",
            "host/path",
            "host:0",
            "host:99999",
            "host:x",
            "[::1",
            "[::1]x",
            ":80",
        ] {
            assert!(
                Endpoint::parse(uri, 443).is_err(),
                "{uri:?} should be refused"
            );
        }
    }
}
