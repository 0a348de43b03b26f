//! What an incoming PUBLISH is: something to ignore (and why), a transient (>= 429) reply to
//! the outstanding request, or a reply whose body goes to the caller's parser. Pure: the
//! outstanding request's `$rid` is an argument, and nothing is sent or logged here.
#![forbid(unsafe_code)]

use std::fmt;

use rumqttc::mqttbytes::QoS;

use super::body::{self, PayloadError, ServiceError};
use super::topic::{self, TopicError};
use super::{retry_after, TRANSIENT_STATUS};

/// What to do with one PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a reply to the outstanding request: log why and drop it.
    Ignore(Ignored),
    /// A throttling or server-error reply: retried within the budget.
    Transient {
        status: u16,
        retry_after: Option<u32>,
        /// What the body says, for the log line.
        error: Option<ServiceError>,
    },
    /// A reply for the caller's parse callback.
    Parse {
        status: u16,
        retry_after: Option<u32>,
        json: String,
        /// The failure the body or the status reports (status >= 300), if any.
        error: Option<ServiceError>,
    },
    /// The reply to the outstanding request, but its body cannot become a C string.
    Unusable {
        retry_after: Option<u32>,
        error: PayloadError,
    },
}

impl Verdict {
    /// The reply's `retry-after` in seconds (by the SDK's rule), when it is a matched reply
    /// that carries one.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Verdict::Ignore(_) => None,
            Verdict::Transient { retry_after, .. }
            | Verdict::Parse { retry_after, .. }
            | Verdict::Unusable { retry_after, .. } => *retry_after,
        }
    }
}

/// Why a PUBLISH was not taken as the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// QoS 2 (DPS uses QoS 0 and 1; acknowledging it would need a PUBREC flow).
    ExactlyOnce { topic: String },
    /// Not a reply topic we can read.
    Topic { topic: String, error: TopicError },
    /// No request is outstanding.
    Unsolicited { status: u16, rid: Option<String> },
    /// Another `$rid` than the outstanding request's.
    StaleRid { rid: Option<String>, want: u32 },
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::ExactlyOnce { topic } => {
                write!(f, "ignored a QoS 2 message on {topic:?}: DPS replies use QoS 1")
            }
            Ignored::Topic { topic, error } => write!(f, "ignored a message on {topic:?}: {error}"),
            Ignored::Unsolicited { status, rid } => write!(
                f,
                "ignored an unsolicited reply (status {status}, $rid={:?}): no request is outstanding",
                rid.as_deref().unwrap_or("none")
            ),
            Ignored::StaleRid { rid, want } => write!(
                f,
                "ignored a reply with $rid={:?}: waiting for $rid={want}",
                rid.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// Classifies a PUBLISH; `outstanding` is the `$rid` of the request waiting for its reply.
pub fn classify(topic: &str, qos: QoS, payload: &[u8], outstanding: Option<u32>) -> Verdict {
    if qos == QoS::ExactlyOnce {
        return Verdict::Ignore(Ignored::ExactlyOnce {
            topic: topic.to_owned(),
        });
    }
    let reply = match topic::parse_reply(topic) {
        Ok(reply) => reply,
        Err(error) => {
            return Verdict::Ignore(Ignored::Topic {
                topic: topic.to_owned(),
                error,
            })
        }
    };
    let Some(want) = outstanding else {
        return Verdict::Ignore(Ignored::Unsolicited {
            status: reply.status,
            rid: reply.rid,
        });
    };
    if reply.rid.as_deref() != Some(want.to_string().as_str()) {
        return Verdict::Ignore(Ignored::StaleRid {
            rid: reply.rid,
            want,
        });
    }
    let retry_after = reply.retry_after.as_deref().map(retry_after::parse);
    let status = reply.status;
    if status >= TRANSIENT_STATUS {
        let error = body::check_payload(payload)
            .ok()
            .and_then(ServiceError::from_body);
        return Verdict::Transient {
            status,
            retry_after,
            error,
        };
    }
    match body::check_payload(payload) {
        Ok(json) => Verdict::Parse {
            status,
            retry_after,
            json: json.to_owned(),
            error: ServiceError::from_body(json)
                .or_else(|| (status >= 300).then(ServiceError::default)),
        },
        Err(error) => Verdict::Unusable { retry_after, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY_1: &str = "$dps/registrations/res/202/?$rid=1&retry-after=3";

    #[test]
    fn the_outstanding_reply_goes_to_the_parser() {
        assert_eq!(
            classify(
                REPLY_1,
                QoS::AtLeastOnce,
                br#"{"status":"assigning"}"#,
                Some(1)
            ),
            Verdict::Parse {
                status: 202,
                retry_after: Some(3),
                json: r#"{"status":"assigning"}"#.into(),
                error: None
            }
        );
    }

    #[test]
    fn an_error_status_carries_its_service_error_even_without_a_body() {
        let v = classify(
            "$dps/registrations/res/401/?$rid=2",
            QoS::AtMostOnce,
            br#"{"errorCode":401002,"trackingId":"t"}"#,
            Some(2),
        );
        let Verdict::Parse { error: Some(e), .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(e.error_code, Some(401002));
        let v = classify(
            "$dps/registrations/res/404/?$rid=2",
            QoS::AtMostOnce,
            b"",
            Some(2),
        );
        assert!(matches!(v, Verdict::Parse { error: Some(_), .. }), "{v:?}");
    }

    #[test]
    fn from_429_on_a_reply_is_transient() {
        for (status, want) in [(428, false), (429, true), (500, true), (503, true)] {
            let topic = format!("$dps/registrations/res/{status}/?$rid=1");
            let v = classify(&topic, QoS::AtMostOnce, b"{}", Some(1));
            assert_eq!(
                matches!(v, Verdict::Transient { .. }),
                want,
                "{status}: {v:?}"
            );
        }
        // a transient reply with an unusable body is still transient
        let v = classify(
            "$dps/registrations/res/503/?$rid=1",
            QoS::AtMostOnce,
            b"\0",
            Some(1),
        );
        assert!(matches!(v, Verdict::Transient { error: None, .. }), "{v:?}");
    }

    #[test]
    fn ignored_publishes_say_why() {
        let cases = [
            (
                REPLY_1,
                QoS::ExactlyOnce,
                Some(1),
                "ignored a QoS 2 message",
            ),
            (
                "other/topic",
                QoS::AtMostOnce,
                Some(1),
                "ignored a message on \"other/topic\"",
            ),
            (
                REPLY_1,
                QoS::AtMostOnce,
                None,
                "ignored an unsolicited reply (status 202, $rid=\"1\")",
            ),
            (
                REPLY_1,
                QoS::AtMostOnce,
                Some(2),
                "ignored a reply with $rid=\"1\": waiting for $rid=2",
            ),
            (
                "$dps/registrations/res/202/?x=1",
                QoS::AtMostOnce,
                Some(2),
                "$rid=\"none\"",
            ),
        ];
        for (topic, qos, outstanding, want) in cases {
            match classify(topic, qos, b"{}", outstanding) {
                Verdict::Ignore(why) => assert!(why.to_string().contains(want), "{why}"),
                other => panic!("{topic}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unusable_body_is_reported_with_the_retry_after() {
        let v = classify(REPLY_1, QoS::AtMostOnce, b"\xff", Some(1));
        assert_eq!(
            v,
            Verdict::Unusable {
                retry_after: Some(3),
                error: PayloadError::NotUtf8(0)
            }
        );
        assert_eq!(v.retry_after(), Some(3));
    }
}
