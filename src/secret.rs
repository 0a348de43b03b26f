//! A string that must never be printed: SAS tokens, proxy passwords.

use std::fmt;

/// Holds a secret; `Debug` and `Display` show only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_shows_the_value() {
        let s = super::Secret::new("SharedAccessSignature sr=x&sig=abc".into());
        assert_eq!(
            format!("{s} {s:?}"),
            "<redacted 34 bytes> <redacted 34 bytes>"
        );
    }
}
