//! What the emulator does for one registration id: how long it makes a device wait, which
//! errors it answers with, and which faults it injects.
//!
//! In the JSON config file a scenario is an object whose fields are all optional; missing
//! fields take the defaults of [`Scenario::default`].

use serde::{Deserialize, Serialize};

/// A point of the registration flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The CONNECT packet.
    Connect,
    /// The SUBSCRIBE packet.
    Subscribe,
    /// A register request (`$dps/registrations/PUT/iotdps-register/...`).
    Register,
    /// A poll (`$dps/registrations/GET/iotdps-get-operationstatus/...`).
    Poll,
}

impl Stage {
    /// Lower-case name, as in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Subscribe => "subscribe",
            Stage::Register => "register",
            Stage::Poll => "poll",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "connect" => Ok(Stage::Connect),
            "subscribe" => Ok(Stage::Subscribe),
            "register" => Ok(Stage::Register),
            "poll" => Ok(Stage::Poll),
            _ => Err(format!(
                "unknown stage {s:?} (connect, subscribe, register, poll)"
            )),
        }
    }
}

/// An error reply (`res/<status>/...` with an error body) to register or poll requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// The status in the reply topic: 400, 401, 404, 412, 500, 503...
    pub status: u16,
    /// `errorCode` in the body, e.g. 401002.
    pub error_code: u32,
    /// `message` in the body.
    #[serde(default = "default_error_message")]
    pub message: String,
    /// Which requests get it: `register` or `poll`.
    #[serde(default = "default_error_stage")]
    pub on: Stage,
    /// How many requests get it before the emulator answers normally; `None` = every one.
    #[serde(default)]
    pub times: Option<u32>,
}

fn default_error_message() -> String {
    "Error injected by dps-emulator".to_string()
}

fn default_error_stage() -> Stage {
    Stage::Register
}

/// The final state of a registration, sent with status 200 after the polls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Final {
    /// `"status":"assigned"` with the assigned hub and device id.
    #[default]
    Assigned,
    /// `"status":"failed"` with `registrationState.errorCode` / `errorMessage`.
    Failed {
        /// `registrationState.errorCode`, e.g. 400209.
        error_code: u32,
        /// `registrationState.errorMessage`.
        message: String,
    },
    /// `"status":"disabled"`.
    Disabled,
}

/// Close the connection, without answering, when a stage is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropAfter {
    /// Which packet triggers the drop.
    pub stage: Stage,
    /// `false`: only the first time this registration id reaches the stage; `true`: every time.
    #[serde(default)]
    pub always: bool,
}

/// The name the design notes use; `DropAfter` avoids shadowing the `Drop` trait.
pub use self::DropAfter as Drop;

/// Behaviour for one registration id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// `retry-after` on 202 replies (seconds); `None` (JSON `null`) omits the parameter.
    pub retry_after: Option<u32>,
    /// How many polls get 202 "assigning" before the final 200.
    pub polls_before_assigned: u32,
    /// The first N requests (register or poll) of this registration id get 429 with
    /// `retry-after` (the scenario's `retry_after`, or 1 when it is `None`).
    pub throttle_429: u32,
    /// An error reply to register or poll requests.
    pub error: Option<ErrorReply>,
    /// What the last poll reports.
    pub final_status: Final,
    /// Refuse CONNECT with this CONNACK return code (1..=5).
    pub connack_refuse: Option<u8>,
    /// With `connack_refuse`: refuse only the first N connections of this registration id
    /// (then accept); `None` = every one.
    pub connack_times: Option<u32>,
    /// Answer SUBSCRIBE with the failure code 0x80.
    pub suback_fail: bool,
    /// Close the connection when a stage is reached, without answering.
    pub drop_after: Option<DropAfter>,
    /// Delay every packet the emulator sends on this registration's connections by this many ms.
    /// The connection waits too: it reads the next packet only after the delayed one is sent.
    pub delay_ms: u64,
    /// Delay every packet the emulator sends by this many ms like a slow link does: the packet
    /// waits in a queue while the connection keeps reading and answering, so replies to
    /// pipelined requests overlap (round trips can be counted from the timeline).
    pub latency_ms: u64,
    /// Answer CONNECT and SUBSCRIBE but never a register or poll request.
    pub never_reply: bool,
    /// Put `retry-after` before `$rid` in reply topics (`?retry-after=3&$rid=1`).
    pub reordered_query: bool,
    /// `registrationState.assignedHub`.
    pub assigned_hub: String,
    /// `registrationState.deviceId`; `None` = the registration id.
    pub device_id: Option<String>,
    /// `registrationState.connectionProfile` (`classic`, `mqttV5`, ...); `None` omits it.
    pub connection_profile: Option<String>,
    /// Sent verbatim as `registrationState.issuedCertificateChain` of an assignment instead of
    /// the chain the emulator issues (with or without a CSR): strings that are not base64 DER
    /// certificates test a device's checks. `None`: the issued chain, if a CSR was sent.
    pub issued_certificate_chain: Option<Vec<String>>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            retry_after: Some(1),
            polls_before_assigned: 1,
            throttle_429: 0,
            error: None,
            final_status: Final::Assigned,
            connack_refuse: None,
            connack_times: None,
            suback_fail: false,
            drop_after: None,
            delay_ms: 0,
            latency_ms: 0,
            never_reply: false,
            reordered_query: false,
            assigned_hub: "emulated-hub.azure-devices.net".to_string(),
            device_id: None,
            connection_profile: None,
            issued_certificate_chain: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_takes_defaults() {
        let s: Scenario = serde_json::from_str(r#"{"polls_before_assigned":3}"#).unwrap();
        assert_eq!(s.polls_before_assigned, 3);
        assert_eq!(s.retry_after, Some(1));
        let s: Scenario = serde_json::from_str(r#"{"retry_after":null}"#).unwrap();
        assert_eq!(s.retry_after, None);
    }

    #[test]
    fn every_field_parses() {
        let s: Scenario = serde_json::from_str(
            r#"{"retry_after":3,"polls_before_assigned":0,"throttle_429":2,
                "error":{"status":401,"error_code":401002,"message":"no","on":"poll","times":1},
                "final_status":{"failed":{"error_code":400209,"message":"x"}},
                "connack_refuse":5,"connack_times":2,"suback_fail":true,
                "drop_after":{"stage":"subscribe","always":true},
                "delay_ms":10,"latency_ms":20,"never_reply":true,"reordered_query":true,
                "assigned_hub":"h","device_id":"d","connection_profile":"mqttV5",
                "issued_certificate_chain":["bm90IGEgY2VydA=="]}"#,
        )
        .unwrap();
        assert_eq!(s.error.as_ref().unwrap().on, Stage::Poll);
        assert_eq!((s.connack_refuse, s.connack_times), (Some(5), Some(2)));
        assert_eq!(s.connection_profile.as_deref(), Some("mqttV5"));
        assert_eq!(s.issued_certificate_chain.as_ref().unwrap().len(), 1);
        assert_eq!(
            s.drop_after,
            Some(DropAfter {
                stage: Stage::Subscribe,
                always: true
            })
        );
        assert!(matches!(
            s.final_status,
            Final::Failed {
                error_code: 400209,
                ..
            }
        ));
        let s: Scenario = serde_json::from_str(r#"{"final_status":"disabled"}"#).unwrap();
        assert_eq!(s.final_status, Final::Disabled);
        assert!(serde_json::from_str::<Scenario>(r#"{"polls":1}"#).is_err());
    }
}
