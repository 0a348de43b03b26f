//! Request topics we publish to and reply topics we accept.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

const REGISTER_PREFIX: &str = "$dps/registrations/PUT/iotdps-register/?$rid=";
const POLL_PREFIX: &str = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=";
const REPLY_PREFIX: &str = "$dps/registrations/res/";

/// Characters of an operation id left as they are in the poll topic (RFC 3986 unreserved).
const OPERATION_ID: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The register request topic for request id `rid`.
pub fn register(rid: u32) -> String {
    format!("{REGISTER_PREFIX}{rid}")
}

/// The operation-status request topic for request id `rid` and an operation id.
pub fn poll(rid: u32, operation_id: &str) -> String {
    let id = utf8_percent_encode(operation_id, OPERATION_ID);
    format!("{POLL_PREFIX}{rid}&operationId={id}")
}

/// What a reply topic says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP-like status, 100..=599.
    pub status: u16,
    /// `$rid` as the service echoed it (verbatim), if present.
    pub rid: Option<String>,
    /// The raw `retry-after` value, if present; see [`super::retry_after::parse`].
    pub retry_after: Option<String>,
}

/// Why a topic is not a reply we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Not under `$dps/registrations/res/`.
    NotAReply,
    /// The status segment is not a three-digit number from 100 to 599.
    BadStatus(String),
    /// No `/?` between the status and the query.
    NoQuery,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::NotAReply => write!(f, "topic is not a DPS reply topic"),
            TopicError::BadStatus(s) => {
                write!(f, "reply status {s:?} is not a number from 100 to 599")
            }
            TopicError::NoQuery => write!(f, "reply topic has no '/?' query part"),
        }
    }
}

/// Parses `$dps/registrations/res/<status>/?<query>`; query parameters may come in any order.
pub fn parse_reply(topic: &str) -> Result<Reply, TopicError> {
    let rest = topic
        .strip_prefix(REPLY_PREFIX)
        .ok_or(TopicError::NotAReply)?;
    let (status, query) = rest.split_once("/?").ok_or(TopicError::NoQuery)?;
    let status = match status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) {
        true => status
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=599).contains(s)),
        false => None,
    }
    .ok_or_else(|| TopicError::BadStatus(status.chars().take(16).collect()))?;
    let mut reply = Reply {
        status,
        rid: None,
        retry_after: None,
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "$rid" if reply.rid.is_none() => reply.rid = Some(value.to_owned()),
            "retry-after" if reply.retry_after.is_none() => {
                reply.retry_after = Some(value.to_owned())
            }
            _ => {}
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics() {
        assert_eq!(
            register(1),
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
        assert_eq!(
            poll(2, "4.abc.def"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abc.def"
        );
        assert_eq!(
            poll(3, "a&b=c"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId=a%26b%3Dc"
        );
    }

    #[test]
    fn reply_in_either_order() {
        let a = parse_reply("$dps/registrations/res/202/?$rid=1&retry-after=3").unwrap();
        let b = parse_reply("$dps/registrations/res/202/?retry-after=3&$rid=1").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            Reply {
                status: 202,
                rid: Some("1".into()),
                retry_after: Some("3".into())
            }
        );
    }

    #[test]
    fn reply_without_retry_after() {
        let r = parse_reply("$dps/registrations/res/200/?$rid=7").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.rid.as_deref(), Some("7"));
        assert_eq!(r.retry_after, None);
    }

    #[test]
    fn rejects_malformed_topics() {
        let bad = [
            (
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                TopicError::NotAReply,
            ),
            ("other/topic", TopicError::NotAReply),
            ("$dps/registrations/res/200", TopicError::NoQuery),
            (
                "$dps/registrations/res/abc/?$rid=1",
                TopicError::BadStatus("abc".into()),
            ),
            (
                "$dps/registrations/res/-20/?$rid=1",
                TopicError::BadStatus("-20".into()),
            ),
            (
                "$dps/registrations/res/99999999999/?$rid=1",
                TopicError::BadStatus("99999999999".into()),
            ),
            (
                "$dps/registrations/res/600/?$rid=1",
                TopicError::BadStatus("600".into()),
            ),
            (
                "$dps/registrations/res//?$rid=1",
                TopicError::BadStatus("".into()),
            ),
        ];
        for (topic, want) in bad {
            assert_eq!(parse_reply(topic), Err(want), "{topic}");
        }
    }

    #[test]
    fn first_of_duplicate_parameters_wins() {
        let r =
            parse_reply("$dps/registrations/res/202/?$rid=1&$rid=2&retry-after=5&retry-after=9")
                .unwrap();
        assert_eq!(r.rid.as_deref(), Some("1"));
        assert_eq!(r.retry_after.as_deref(), Some("5"));
    }
}
