//! The reply topic parser (`dps::topic::parse_reply`) on any text, and the poll topic builder on
//! any operation id: never a panic; what is accepted is a well-formed reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::{retry_after, topic};

const PREFIX: &str = "$dps/registrations/res/";

fuzz_target!(|data: &[u8]| {
    // MQTT topics are UTF-8 (rumqttc refuses the rest before we see it); also try the lossy
    // form so that arbitrary bytes still reach the parser.
    let lossy = String::from_utf8_lossy(data);
    for text in [std::str::from_utf8(data).ok(), Some(lossy.as_ref())]
        .into_iter()
        .flatten()
    {
        match topic::parse_reply(text) {
            Ok(reply) => {
                assert!((100..=599).contains(&reply.status), "{reply:?}");
                assert!(text.starts_with(PREFIX));
                let rest = &text[PREFIX.len()..];
                assert_eq!(&rest[..3], format!("{}", reply.status));
                assert!(rest[3..].starts_with("/?"));
                if let Some(rid) = &reply.rid {
                    assert!(!rid.contains('&'), "{rid:?}");
                }
                if let Some(value) = &reply.retry_after {
                    assert!(!value.contains('&'));
                    let secs = retry_after::parse(value);
                    assert!((1..=300).contains(&secs));
                }
            }
            Err(e) => {
                // the diagnostic is bounded even for a huge status segment
                let line = e.to_string();
                assert!(line.len() < 200, "{line}");
            }
        }
    }
    // The poll topic carries the operation id from the service: it must stay one query value.
    if let Ok(id) = std::str::from_utf8(data) {
        let t = topic::poll(7, id);
        let query = t
            .strip_prefix("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=")
            .expect("poll prefix");
        assert!(
            query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{query:?}"
        );
    }
});
