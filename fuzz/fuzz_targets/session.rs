//! The sans-io registration state machine fed arbitrary sequences of caller calls, callback
//! answers (current or stale), timer ticks and network events (structured packets with any
//! topic/status/rid/retry-after/payload/QoS, or raw bytes through the MQTT decoder with the
//! 96 KB limit, as the I/O task decodes them). Never a panic, and the callback contract holds:
//! the error path at most once per open and nothing after it, CONNECTED at most once per open,
//! retry intervals in 1..=300, parse input a NUL-free string within 96 KB, no callout once
//! closed, packets only sent on a connection that is up.
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::MAX_PACKET;
use prov_mqtt_transport::secret::Secret;
use prov_mqtt_transport::session::{
    Auth, Callout, NetAction, NetEvent, Outcome, Parsed, ReplyStatus, Session, Settings, Ticket,
};
use prov_mqtt_transport::trace::describe;
use prov_mqtt_transport::Error;
use rumqttc::mqttbytes::v4::{
    ConnAck, Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;

#[derive(Arbitrary, Debug)]
struct Input {
    symmetric_key: bool,
    trace: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Rid {
    /// The outstanding request's rid (as last sent).
    Current,
    /// The one before it.
    Previous,
    Number(u32),
    Text(String),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Status {
    /// One of the statuses DPS sends (index modulo their number).
    Common(u8),
    Any(u16),
}

impl Status {
    fn value(&self) -> u16 {
        const COMMON: [u16; 9] = [200, 202, 400, 401, 404, 412, 429, 500, 503];
        match self {
            Status::Common(i) => COMMON[usize::from(*i) % COMMON.len()],
            Status::Any(n) => *n,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Topic {
    Reply {
        status: Status,
        rid: Rid,
        retry_after: Option<String>,
        retry_first: bool,
        extra: Option<String>,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Assigning,
    Assigned,
    ErrorBody(u64),
    /// Just over the 96 KB limit (a packet of this size is refused by the decoder; the
    /// session must refuse the payload on its own too).
    Huge,
}

#[derive(Arbitrary, Debug)]
enum Event {
    Up,
    Down(u8),
    ConnAck(u8),
    SubAck {
        expected_pkid: bool,
        pkid: u16,
        codes: Vec<u8>,
    },
    Publish {
        qos: u8,
        pkid: u16,
        topic: Topic,
        payload: Payload,
    },
    PingResp,
    Other(u8),
    /// Bytes through the MQTT decoder, as the I/O task reads them.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Open(String),
    Close,
    Register,
    Poll,
    Tick(u32),
    Net(Event),
    ConnectFailed(u8),
    Credentials {
        stale: bool,
        token: Option<String>,
    },
    Payload {
        stale: bool,
        body: Option<Vec<u8>>,
    },
    Parsed {
        stale: bool,
        ok: bool,
        status: u8,
        operation_id: Option<String>,
    },
    FailNow,
    Settings {
        reply_timeout_secs: u8,
        max_attempts: u8,
        max_secs: u16,
        keep_alive: u8,
    },
}

fn error(kind: u8) -> Error {
    match kind % 8 {
        0 => Error::ConnectionLost("closed".into()),
        1 => Error::Timeout {
            waiting_for: "x",
            after: Duration::from_secs(1),
        },
        2 => Error::Protocol("malformed".into()),
        3 => Error::PacketTooLarge(MAX_PACKET + 1),
        4 => Error::Tls {
            why: "unknown issuer".into(),
            transient: false,
        },
        5 => Error::Tls {
            why: "reset".into(),
            transient: true,
        },
        6 => Error::Connect {
            target: "h:1".into(),
            why: "refused".into(),
        },
        _ => Error::MissingClientCertificate,
    }
}

fn status(raw: u8) -> Option<ReplyStatus> {
    use ReplyStatus::*;
    [
        Connected,
        Authenticated,
        Unassigned,
        Assigning,
        Assigned,
        Blacklisted,
        Transient,
        Error,
        Disabled,
    ]
    .get(usize::from(raw))
    .copied()
}

/// What the harness knows and checks across the run.
struct Harness {
    session: Session,
    now: Instant,
    link_up: bool,
    /// A Connect was issued and nothing arrived on it yet.
    fresh_link: bool,
    rids: Vec<String>,
    subscribe_pkid: u16,
    old_ticket: Option<Ticket>,
    credentials: Option<Ticket>,
    payload: Option<Ticket>,
    parse: Option<Ticket>,
    failed: bool,
    connected: u32,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(action) = self.session.next_net_action() {
            match action {
                NetAction::Connect => {
                    self.link_up = true;
                    self.fresh_link = true;
                }
                NetAction::Send(wire) => {
                    assert!(self.link_up, "send without a connection: {wire:?}");
                    let _ = format!("{wire:?}");
                    match wire.packet() {
                        Packet::Publish(p) => {
                            assert!(p.topic.starts_with("$dps/registrations/"));
                            let rid = p
                                .topic
                                .split("$rid=")
                                .nth(1)
                                .and_then(|r| r.split('&').next())
                                .expect("a request carries $rid");
                            self.rids.push(rid.to_owned());
                        }
                        Packet::Subscribe(s) => self.subscribe_pkid = s.pkid,
                        _ => {}
                    }
                }
                NetAction::Disconnect { .. } => {
                    assert!(self.link_up, "disconnect without a connection");
                    self.link_up = false;
                    self.fresh_link = false;
                }
            }
        }
        while let Some(callout) = self.session.next_callout() {
            assert!(self.session.is_open(), "callout while closed: {callout:?}");
            assert!(!self.failed, "callout after the error path: {callout:?}");
            match callout {
                Callout::Status {
                    status,
                    retry_after,
                } => {
                    assert!((1..=300).contains(&retry_after), "{retry_after}");
                    if status == ReplyStatus::Connected {
                        self.connected += 1;
                        assert_eq!(self.connected, 1, "CONNECTED twice in one open");
                    }
                }
                Callout::Credentials(t) => self.credentials = Some(t),
                Callout::Payload(t) => self.payload = Some(t),
                Callout::Parse { ticket, json } => {
                    assert!(json.len() <= MAX_PACKET);
                    assert!(!json.as_bytes().contains(&0));
                    self.parse = Some(ticket);
                }
                // the failure's details for the hook, queued just before Failed
                Callout::KeyFail | Callout::KeyUnauthorized | Callout::Info(_) => {}
                Callout::Failed => self.failed = true,
            }
        }
    }

    fn ticket(&self, stale: bool, pending: Option<Ticket>) -> Ticket {
        match (stale, self.old_ticket) {
            (true, Some(old)) => old,
            _ => pending.unwrap_or_else(|| self.session.ticket()),
        }
    }

    fn deliver(&mut self, event: NetEvent) {
        self.fresh_link = false;
        if let NetEvent::Packet(p) = &event {
            let _ = describe(p);
        }
        self.session.on_net(self.now, event);
    }

    fn rid(&self, rid: &Rid) -> Option<String> {
        match rid {
            Rid::Current => self.rids.last().cloned(),
            Rid::Previous => self.rids.iter().rev().nth(1).cloned(),
            Rid::Number(n) => Some(n.to_string()),
            Rid::Text(t) => Some(t.clone()),
            Rid::Missing => None,
        }
    }

    fn event(&mut self, event: Event) {
        let packet = match event {
            Event::Up => return self.deliver(NetEvent::Up("TLS 1.3".into())),
            Event::Down(kind) => return self.deliver(NetEvent::Down(error(kind))),
            Event::ConnAck(code) => {
                use ConnectReturnCode::*;
                let code = [
                    Success,
                    RefusedProtocolVersion,
                    BadClientId,
                    ServiceUnavailable,
                    BadUserNamePassword,
                    NotAuthorized,
                ][usize::from(code % 6)];
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                })
            }
            Event::SubAck {
                expected_pkid,
                pkid,
                codes,
            } => Packet::SubAck(SubAck {
                pkid: if expected_pkid {
                    self.subscribe_pkid
                } else {
                    pkid
                },
                return_codes: codes
                    .iter()
                    .map(|c| match c % 4 {
                        0 => SubscribeReasonCode::Success(QoS::AtMostOnce),
                        1 => SubscribeReasonCode::Success(QoS::AtLeastOnce),
                        2 => SubscribeReasonCode::Success(QoS::ExactlyOnce),
                        _ => SubscribeReasonCode::Failure,
                    })
                    .collect(),
            }),
            Event::Publish {
                qos,
                pkid,
                topic,
                payload,
            } => {
                let topic = match topic {
                    Topic::Raw(t) => t,
                    Topic::Reply {
                        status,
                        rid,
                        retry_after,
                        retry_first,
                        extra,
                    } => {
                        let mut params = Vec::new();
                        if let Some(rid) = self.rid(&rid) {
                            params.push(format!("$rid={rid}"));
                        }
                        if let Some(r) = retry_after {
                            let p = format!("retry-after={r}");
                            match retry_first {
                                true => params.insert(0, p),
                                false => params.push(p),
                            }
                        }
                        params.extend(extra);
                        let status = status.value();
                        format!("$dps/registrations/res/{status}/?{}", params.join("&"))
                    }
                };
                let payload = match payload {
                    Payload::Bytes(b) => b,
                    Payload::Assigning => br#"{"operationId":"4.x","status":"assigning"}"#.to_vec(),
                    Payload::Assigned => br#"{"operationId":"4.x","status":"assigned","registrationState":{"assignedHub":"h","deviceId":"d"}}"#.to_vec(),
                    Payload::ErrorBody(code) => format!(
                        r#"{{"errorCode":{code},"trackingId":"t","message":"m"}}"#
                    )
                    .into_bytes(),
                    Payload::Huge => vec![b' '; MAX_PACKET + 1],
                };
                let qos = match qos % 3 {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                };
                let mut publish = Publish::new(topic, qos, payload);
                publish.pkid = pkid;
                Packet::Publish(publish)
            }
            Event::PingResp => Packet::PingResp,
            Event::Other(kind) => match kind % 8 {
                0 => Packet::PubAck(PubAck::new(1)),
                1 => Packet::PubRec(PubRec::new(1)),
                2 => Packet::PubRel(PubRel::new(1)),
                3 => Packet::PubComp(PubComp::new(1)),
                4 => Packet::UnsubAck(UnsubAck::new(1)),
                5 => Packet::PingReq,
                6 => Packet::Disconnect,
                _ => {
                    Packet::Subscribe(rumqttc::mqttbytes::v4::Subscribe::new("x", QoS::AtMostOnce))
                }
            },
            Event::Raw(bytes) => {
                // As net::link::decode: every complete packet, then a clean error or wait.
                let mut inbound = BytesMut::from(&bytes[..]);
                loop {
                    match Packet::read(&mut inbound, MAX_PACKET) {
                        Ok(packet) => {
                            self.deliver(NetEvent::Packet(packet));
                            self.drain();
                        }
                        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return,
                        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
                            return self.deliver(NetEvent::Down(Error::PacketTooLarge(n)))
                        }
                        Err(e) => {
                            return self.deliver(NetEvent::Down(Error::Protocol(format!(
                                "malformed packet: {e}"
                            ))))
                        }
                    }
                }
            }
        };
        self.deliver(NetEvent::Packet(packet));
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::Open(regid) => {
                let was_open = self.session.is_open();
                let r = self.session.open(&regid);
                // dps::ids refuses an empty or over-long id
                if !regid.is_empty() && regid.len() <= prov_mqtt_transport::dps::MAX_ID_LEN {
                    assert_eq!(r.is_err(), was_open);
                }
                assert_eq!(self.session.is_open(), was_open || r.is_ok());
                if r.is_ok() {
                    self.failed = false;
                    self.connected = 0;
                }
            }
            Op::Close => {
                self.old_ticket = Some(self.session.ticket());
                self.session.close();
                assert!(!self.session.is_open());
                assert!(self.session.next_callout().is_none(), "callout after close");
                assert_eq!(self.session.operation_id(), None);
                self.failed = false;
                self.connected = 0;
                self.credentials = None;
                self.payload = None;
                self.parse = None;
            }
            Op::Register => {
                let _ = self.session.register();
            }
            Op::Poll => {
                let r = self.session.get_operation_status();
                if self.session.operation_id().is_none() {
                    assert!(r.is_err());
                }
            }
            Op::Tick(ms) => {
                self.now += Duration::from_millis(u64::from(ms % 400_000));
                self.session.tick(self.now);
            }
            Op::Net(event) => self.event(event),
            Op::ConnectFailed(kind) => {
                // Only right after a Connect, as the transport calls it.
                if self.fresh_link {
                    self.fresh_link = false;
                    self.session.connect_failed(self.now, error(kind));
                }
            }
            Op::Credentials { stale, token } => {
                let t = self.ticket(stale, self.credentials);
                self.session
                    .credentials(t, self.now, token.map(Secret::new));
            }
            Op::Payload { stale, body } => {
                let t = self.ticket(stale, self.payload);
                self.session.payload(t, self.now, body);
            }
            Op::Parsed {
                stale,
                ok,
                status: raw,
                operation_id,
            } => {
                let t = self.ticket(stale, self.parse);
                let was_failed = self.failed;
                let parsed = ok.then(|| Parsed {
                    status: status(raw % 10), // 9: outside the enum
                    operation_id,
                });
                let outcome = self.session.parsed(t, parsed);
                if was_failed || !self.session.is_open() {
                    assert_eq!(outcome, Outcome::Nothing, "an outcome after the error path");
                }
                if let Outcome::Status { retry_after, .. } = outcome {
                    assert!((1..=300).contains(&retry_after));
                }
            }
            Op::FailNow => self.session.fail_now(Error::Internal("fuzz".into())),
            Op::Settings {
                reply_timeout_secs,
                max_attempts,
                max_secs,
                keep_alive,
            } => {
                let s = self.session.settings_mut();
                s.reply_timeout = Duration::from_secs(u64::from(reply_timeout_secs.max(1)));
                s.retry.max_attempts = u32::from(max_attempts % 101);
                s.retry.max_time = Duration::from_secs(u64::from(max_secs.max(1)));
                s.keep_alive = u16::from(keep_alive);
            }
        }
        self.drain();
    }
}

fuzz_target!(|input: Input| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| prov_mqtt_transport::log::set_sink(|_, _| {}));

    let auth = match input.symmetric_key {
        true => Auth::SymmetricKey,
        false => Auth::X509,
    };
    let mut session =
        Session::new(Settings::new("scope".into(), "2021-06-01".into(), auth)).with_seed(1);
    session.set_trace(input.trace);
    let mut h = Harness {
        session,
        now: Instant::now(),
        link_up: false,
        fresh_link: false,
        rids: Vec::new(),
        subscribe_pkid: 1,
        old_ticket: None,
        credentials: None,
        payload: None,
        parse: None,
        failed: false,
        connected: 0,
    };
    for op in input.ops.into_iter().take(256) {
        h.op(op);
    }
});
