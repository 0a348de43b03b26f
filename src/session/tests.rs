//! Transition tests of the state machine, without sockets: events in, actions and callouts out.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{ConnAck, Packet, Publish, SubAck, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;

use super::*;
use crate::error::Error;
use crate::secret::Secret;

const SCOPE: &str = "0ne0001";

/// A [`NetAction`] with the packet unwrapped from its redacting [`crate::trace::Wire`], so the
/// tables below can match on it.
#[derive(Debug, PartialEq)]
enum Act {
    Connect,
    Send(Packet),
    Disconnect { graceful: bool },
}

impl From<NetAction> for Act {
    fn from(a: NetAction) -> Act {
        match a {
            NetAction::Connect => Act::Connect,
            NetAction::Send(wire) => Act::Send(wire.into_packet()),
            NetAction::Disconnect { graceful } => Act::Disconnect { graceful },
        }
    }
}

struct Rig {
    s: Session,
    now: Instant,
}

impl Rig {
    fn new(auth: Auth) -> Rig {
        Rig::with(auth, |_| {})
    }

    fn with(auth: Auth, configure: impl FnOnce(&mut Settings)) -> Rig {
        let mut settings = Settings::new(SCOPE.into(), "2021-06-01".into(), auth);
        settings.retry = RetryPolicy {
            max_attempts: 3,
            max_time: Duration::from_secs(60),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
        };
        configure(&mut settings);
        let mut s = Session::new(settings).with_seed(7);
        s.open("dev1").unwrap();
        Rig {
            s,
            now: Instant::now(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.tick(self.now);
    }

    fn net(&mut self) -> Vec<Act> {
        std::iter::from_fn(|| self.s.next_net_action().map(Act::from)).collect()
    }

    fn callouts(&mut self) -> Vec<Callout> {
        std::iter::from_fn(|| self.s.next_callout()).collect()
    }

    fn packet(&mut self, p: Packet) {
        self.s.on_net(self.now, NetEvent::Packet(p));
    }

    fn reply(&mut self, topic: &str, body: &str) {
        self.packet(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            body.as_bytes().to_vec(),
        )));
    }

    /// tick → CONNECT+SUBSCRIBE → CONNACK → SUBACK, X.509.
    fn connect(&mut self) {
        self.s.tick(self.now);
        let net = self.net();
        assert_eq!(net[0], Act::Connect);
        self.packet(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )));
        let pkid = net
            .iter()
            .find_map(|a| match a {
                Act::Send(Packet::Subscribe(s)) => Some(s.pkid),
                _ => None,
            })
            .unwrap();
        self.packet(Packet::SubAck(SubAck::new(
            pkid,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        )));
    }

    /// Answers the payload callout and returns the topic published.
    fn publish_payload(&mut self) -> String {
        let ticket = match self.callouts().as_slice() {
            [.., Callout::Payload(t)] => *t,
            other => panic!("expected a payload callout, got {other:?}"),
        };
        self.s.payload(
            ticket,
            self.now,
            Some(br#"{"registrationId":"dev1"}"#.to_vec()),
        );
        match self.net().as_slice() {
            [Act::Send(Packet::Publish(p))] => {
                assert_eq!(p.qos, QoS::AtMostOnce);
                p.topic.clone()
            }
            other => panic!("expected one publish, got {other:?}"),
        }
    }

    /// Connected, subscribed, and the register request published (rid 1).
    fn register_sent(&mut self) {
        self.connect();
        self.callouts();
        self.s.register().unwrap();
        self.s.tick(self.now);
        assert_eq!(
            self.publish_payload(),
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
    }

    fn parse_ticket(&mut self) -> (Ticket, String) {
        match self.callouts().as_slice() {
            [Callout::Parse { ticket, json }] => (*ticket, json.clone()),
            other => panic!("expected a parse callout, got {other:?}"),
        }
    }
}

fn assigning(op: &str) -> Option<Parsed> {
    Some(Parsed {
        status: Some(ReplyStatus::Assigning),
        operation_id: Some(op.into()),
    })
}

#[test]
fn connect_and_subscribe_go_out_back_to_back() {
    let mut r = Rig::new(Auth::X509);
    r.s.tick(r.now);
    let net = r.net();
    assert_eq!(net.len(), 3, "{net:?}");
    assert_eq!(net[0], Act::Connect);
    match &net[1] {
        Act::Send(Packet::Connect(c)) => {
            assert_eq!(c.client_id, "dev1");
            assert!(c.clean_session);
            let login = c.login.as_ref().unwrap();
            assert_eq!(
                login.username,
                "0ne0001/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0"
            );
            assert_eq!(login.password, "");
        }
        other => panic!("{other:?}"),
    }
    match &net[2] {
        Act::Send(Packet::Subscribe(s)) => {
            assert_eq!(s.filters[0].path, "$dps/registrations/res/#");
            assert_eq!(s.filters[0].qos, QoS::AtLeastOnce);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_registration_register_then_poll() {
    let mut r = Rig::new(Auth::X509);
    r.connect();
    assert_eq!(
        r.callouts(),
        vec![Callout::Status {
            status: ReplyStatus::Connected,
            retry_after: 1
        }]
    );
    r.s.register().unwrap();
    r.s.tick(r.now);
    assert_eq!(
        r.publish_payload(),
        "$dps/registrations/PUT/iotdps-register/?$rid=1"
    );
    r.reply(
        "$dps/registrations/res/202/?$rid=1&retry-after=3",
        r#"{"operationId":"op1","status":"assigning"}"#,
    );
    let (t, json) = r.parse_ticket();
    assert!(json.contains("op1"));
    assert_eq!(
        r.s.parsed(t, assigning("op1")),
        Outcome::Status {
            status: ReplyStatus::Assigning,
            retry_after: 3
        }
    );
    r.s.get_operation_status().unwrap();
    r.s.tick(r.now);
    assert_eq!(
        r.publish_payload(),
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op1"
    );
    r.reply(
        "$dps/registrations/res/200/?$rid=2",
        r#"{"status":"assigned"}"#,
    );
    let (t, _) = r.parse_ticket();
    let done = Parsed {
        status: Some(ReplyStatus::Assigned),
        operation_id: None,
    };
    assert_eq!(r.s.parsed(t, Some(done)), Outcome::Assigned);
}

#[test]
fn symmetric_key_asks_for_a_token_per_connection() {
    let mut r = Rig::new(Auth::SymmetricKey);
    r.s.tick(r.now);
    assert!(r.net().is_empty(), "no connection before the token");
    let t = match r.callouts().as_slice() {
        [Callout::Credentials(t)] => *t,
        other => panic!("{other:?}"),
    };
    r.s.credentials(
        t,
        r.now,
        Some(Secret::new("SharedAccessSignature sr=x".into())),
    );
    match r.net().as_slice() {
        [Act::Connect, Act::Send(Packet::Connect(c)), Act::Send(Packet::Subscribe(_))] => {
            assert_eq!(
                c.login.as_ref().unwrap().password,
                "SharedAccessSignature sr=x"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn null_token_takes_the_error_path() {
    let mut r = Rig::new(Auth::SymmetricKey);
    r.s.tick(r.now);
    let t = r.s.ticket();
    r.callouts();
    r.s.credentials(t, r.now, None);
    assert_eq!(r.callouts(), vec![Callout::Failed]);
    assert!(r.s.register().is_err(), "error state refuses register");
}

#[test]
fn replies_are_matched_by_rid() {
    let mut r = Rig::new(Auth::X509);
    r.connect();
    r.callouts();
    r.reply("$dps/registrations/res/202/?$rid=1", "{}");
    assert!(r.callouts().is_empty(), "unsolicited reply ignored");
    r.s.register().unwrap();
    r.s.tick(r.now);
    r.publish_payload();
    r.reply("$dps/registrations/res/202/?$rid=9&retry-after=7", "{}");
    assert!(r.callouts().is_empty(), "stale rid ignored");
    assert_eq!(
        r.s.retry_after(),
        1,
        "an ignored reply does not change retry-after"
    );
    r.reply(
        "$dps/registrations/res/202/?retry-after=5&$rid=1",
        r#"{"operationId":"o","status":"assigning"}"#,
    );
    let (t, _) = r.parse_ticket();
    assert_eq!(
        r.s.parsed(t, assigning("o")),
        Outcome::Status {
            status: ReplyStatus::Assigning,
            retry_after: 5
        }
    );
}

#[test]
fn throttled_and_5xx_are_transient_and_register_may_be_called_again() {
    for (status, retry_after, want) in [
        ("429", "&retry-after=8", 8),
        ("503", "", 1),
        ("500", "&retry-after=900", 1),
    ] {
        let mut r = Rig::new(Auth::X509);
        r.register_sent();
        r.reply(
            &format!("$dps/registrations/res/{status}/?$rid=1{retry_after}"),
            "{}",
        );
        assert_eq!(
            r.callouts(),
            vec![Callout::Status {
                status: ReplyStatus::Transient,
                retry_after: want
            }],
            "{status}"
        );
        r.s.register().unwrap();
        r.s.tick(r.now);
        assert_eq!(
            r.publish_payload(),
            "$dps/registrations/PUT/iotdps-register/?$rid=2"
        );
    }
}

#[test]
fn a_run_of_transient_replies_is_bounded_by_the_budget_and_progress_resets_it() {
    // max_attempts 3: three transient replies in a row are reported, the fourth ends it
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    for rid in 1..=4 {
        r.reply(&format!("$dps/registrations/res/503/?$rid={rid}"), "{}");
        let callouts = r.callouts();
        if rid <= 3 {
            assert_eq!(
                callouts,
                vec![Callout::Status {
                    status: ReplyStatus::Transient,
                    retry_after: 1
                }],
                "reply {rid}"
            );
            r.s.register().unwrap();
            r.s.tick(r.now);
            r.publish_payload();
        } else {
            assert_eq!(callouts, vec![Callout::Failed], "reply {rid}");
        }
    }

    // a real answer in between starts a new run
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    for rid in 1..=3 {
        r.reply(&format!("$dps/registrations/res/429/?$rid={rid}"), "{}");
        r.callouts();
        r.s.register().unwrap();
        r.s.tick(r.now);
        r.publish_payload();
    }
    r.reply(
        "$dps/registrations/res/202/?$rid=4",
        r#"{"operationId":"op1","status":"assigning"}"#,
    );
    let (t, _) = r.parse_ticket();
    r.s.parsed(t, assigning("op1"));
    for rid in 5..=7 {
        r.s.get_operation_status().unwrap();
        r.s.tick(r.now);
        r.publish_payload();
        r.reply(&format!("$dps/registrations/res/503/?$rid={rid}"), "{}");
        assert_eq!(
            r.callouts(),
            vec![Callout::Status {
                status: ReplyStatus::Transient,
                retry_after: 1
            }],
            "poll reply {rid}"
        );
    }
}

#[test]
fn error_status_reply_goes_to_the_parser_and_null_takes_the_error_path() {
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    r.reply(
        "$dps/registrations/res/401/?$rid=1",
        r#"{"errorCode":401002,"trackingId":"t","message":"m"}"#,
    );
    let (t, _) = r.parse_ticket();
    assert_eq!(r.s.parsed(t, None), Outcome::Nothing);
    assert_eq!(r.callouts(), vec![Callout::Failed]);
    assert!(matches!(
        r.net().as_slice(),
        [
            Act::Send(Packet::Disconnect),
            Act::Disconnect { graceful: true }
        ]
    ));
}

#[test]
fn connack_refused_reports_unauthorized_once_and_is_not_retried() {
    let mut r = Rig::new(Auth::X509);
    r.s.tick(r.now);
    r.net();
    r.packet(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::NotAuthorized,
        false,
    )));
    assert_eq!(
        r.callouts(),
        vec![Callout::KeyUnauthorized, Callout::Failed]
    );
    r.advance(Duration::from_secs(120));
    assert!(
        !r.net().contains(&Act::Connect),
        "no reconnect after an auth failure"
    );
    assert!(r.callouts().is_empty());
}

#[test]
fn suback_failure_takes_the_error_path() {
    let mut r = Rig::new(Auth::X509);
    r.s.tick(r.now);
    r.net();
    r.packet(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )));
    r.packet(Packet::SubAck(SubAck::new(
        1,
        vec![SubscribeReasonCode::Failure],
    )));
    assert_eq!(
        r.callouts(),
        vec![
            Callout::Status {
                status: ReplyStatus::Connected,
                retry_after: 1
            },
            Callout::Failed
        ]
    );
}

#[test]
fn a_dropped_connection_reconnects_and_resends_with_a_new_rid() {
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    r.s.on_net(r.now, NetEvent::Down(Error::ConnectionLost("reset".into())));
    assert_eq!(r.net(), vec![Act::Disconnect { graceful: false }]);
    assert!(r.callouts().is_empty(), "a survived fault is not reported");
    r.advance(Duration::from_millis(400));
    assert!(
        r.net().is_empty(),
        "backoff of at least half the first delay"
    );
    r.advance(Duration::from_secs(1));
    r.connect();
    assert!(
        r.callouts()
            .iter()
            .all(|c| !matches!(c, Callout::Status { .. })),
        "CONNECTED is reported once"
    );
    r.s.tick(r.now);
    // connect() consumed the payload callout via tick_ready: answer it
    let t = r.s.ticket();
    r.s.payload(t, r.now, Some(b"{}".to_vec()));
    let topics: Vec<_> = r
        .net()
        .into_iter()
        .filter_map(|a| match a {
            Act::Send(Packet::Publish(p)) => Some(p.topic),
            _ => None,
        })
        .collect();
    assert_eq!(
        topics,
        vec!["$dps/registrations/PUT/iotdps-register/?$rid=2"]
    );
}

#[test]
fn reply_timeouts_retry_until_the_budget_is_spent_then_fail_once() {
    let mut r = Rig::new(Auth::X509);
    r.s.settings_mut().reply_timeout = Duration::from_secs(5);
    r.register_sent();
    let mut connects = 0;
    let mut failed = 0;
    for _ in 0..200 {
        r.advance(Duration::from_millis(500));
        for a in r.net() {
            if a == Act::Connect {
                connects += 1;
            }
        }
        failed += r
            .callouts()
            .iter()
            .filter(|c| **c == Callout::Failed)
            .count();
    }
    assert_eq!(connects, 3, "max_attempts reconnects");
    assert_eq!(failed, 1, "the error path exactly once");
}

#[test]
fn the_time_budget_is_not_overshot_by_a_backoff() {
    let mut r = Rig::new(Auth::X509);
    r.s.settings_mut().retry = RetryPolicy {
        max_attempts: 100,
        max_time: Duration::from_secs(10),
        initial_delay: Duration::from_secs(4),
        max_delay: Duration::from_secs(30),
    };
    let start = r.now;
    let mut failed_at = None;
    for _ in 0..400 {
        r.advance(Duration::from_millis(100));
        if r.net().contains(&Act::Connect) {
            // Every attempt fails at once.
            r.s.on_net(r.now, NetEvent::Down(Error::ConnectionLost("test".into())));
        }
        if r.callouts().contains(&Callout::Failed) {
            failed_at.get_or_insert(r.now - start);
        }
    }
    let failed_at = failed_at.expect("the error path");
    // Backoffs 2-4, 4-8, 8-16 s: without the cap the third ends at up to 28 s.
    assert!(
        failed_at <= Duration::from_millis(10_200),
        "gave up {failed_at:?} after the first fault, the budget is 10 s"
    );
}

#[test]
fn close_forgets_everything_and_drops_stale_answers() {
    let mut r = Rig::new(Auth::X509);
    r.connect();
    r.s.register().unwrap();
    r.s.tick(r.now);
    let stale = r.s.ticket();
    r.s.close();
    assert!(r.callouts().is_empty(), "no callout after close");
    r.s.payload(stale, r.now, Some(b"{}".to_vec()));
    assert!(!r
        .net()
        .iter()
        .any(|a| matches!(a, Act::Send(Packet::Publish(_)))));
    r.s.open("dev1").unwrap();
    r.s.register().unwrap();
    assert_eq!(r.s.operation_id(), None);
}

#[test]
fn argument_state_checks() {
    let mut r = Rig::new(Auth::X509);
    assert!(r.s.get_operation_status().is_err(), "no operation id yet");
    r.s.register().unwrap();
    assert!(r.s.register().is_err(), "already in progress");
    assert!(r.s.open("again").is_err(), "already open");
}

/// Found by tests/all/hostile_caller.rs: a 1 MB registration id (or scope, or api version) was
/// accepted, its CONNECT could not be encoded, and the registration failed later as "connection
/// lost". Now open refuses it at once, and a refused open leaves the session closed.
#[test]
fn over_long_identifiers_are_refused_at_open() {
    let long = "a".repeat(crate::dps::MAX_ID_LEN + 1);
    let longest = "a".repeat(crate::dps::MAX_ID_LEN);
    let mut s = Session::new(Settings::new(SCOPE.into(), "2021-06-01".into(), Auth::X509));
    let e = s.open(&long).unwrap_err();
    assert!(e.to_string().contains("registration_id"), "{e}");
    assert!(!s.is_open());
    s.open(&longest).unwrap();
    for (scope, api) in [(long.as_str(), "2021-06-01"), (SCOPE, long.as_str())] {
        let mut s = Session::new(Settings::new(scope.into(), api.into(), Auth::X509));
        assert!(s.open("dev1").is_err());
        assert!(!s.is_open());
    }
}

#[test]
fn qos1_replies_are_acknowledged_and_qos2_ignored() {
    let mut r = Rig::new(Auth::X509);
    r.connect();
    r.callouts();
    r.net();
    r.s.register().unwrap();
    r.s.tick(r.now);
    r.publish_payload();
    let mut q2 = Publish::new(
        "$dps/registrations/res/202/?$rid=1",
        QoS::ExactlyOnce,
        b"{}".to_vec(),
    );
    q2.pkid = 4;
    r.packet(Packet::Publish(q2));
    assert!(r.callouts().is_empty() && r.net().is_empty());
    let mut q1 = Publish::new(
        "$dps/registrations/res/202/?$rid=1",
        QoS::AtLeastOnce,
        b"{}".to_vec(),
    );
    q1.pkid = 5;
    r.packet(Packet::Publish(q1));
    assert!(matches!(r.net().as_slice(), [Act::Send(Packet::PubAck(a))] if a.pkid == 5));
    assert_eq!(r.callouts().len(), 1);
}

#[test]
fn unusable_payloads_take_the_error_path() {
    for body in [&b"{\"a\":\0}"[..], &b"\xff\xfe"[..]] {
        let mut r = Rig::new(Auth::X509);
        r.register_sent();
        r.packet(Packet::Publish(Publish::new(
            "$dps/registrations/res/200/?$rid=1",
            QoS::AtMostOnce,
            body.to_vec(),
        )));
        assert_eq!(r.callouts(), vec![Callout::Failed]);
    }
}

#[test]
fn keep_alive_pings_and_a_missing_pingresp_is_a_fault() {
    let mut r = Rig::new(Auth::X509);
    r.s.settings_mut().keep_alive = 10;
    r.connect();
    r.net();
    r.advance(Duration::from_secs(10));
    assert_eq!(r.net(), vec![Act::Send(Packet::PingReq)]);
    r.packet(Packet::PingResp);
    r.advance(Duration::from_secs(10));
    assert_eq!(r.net(), vec![Act::Send(Packet::PingReq)]);
    r.advance(Duration::from_secs(10));
    assert_eq!(
        r.net(),
        vec![Act::Disconnect { graceful: false }],
        "no PINGRESP: reconnect"
    );
}

#[test]
fn assigning_without_operation_id_fails() {
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    r.reply("$dps/registrations/res/202/?$rid=1", "{}");
    let (t, _) = r.parse_ticket();
    let p = Parsed {
        status: Some(ReplyStatus::Assigning),
        operation_id: None,
    };
    assert_eq!(r.s.parsed(t, Some(p)), Outcome::Nothing);
    assert_eq!(r.callouts(), vec![Callout::Failed]);
}

// ---- the budget is a hard limit (issue 11 item 1) ----------------------------------------

/// How the scripted server treats every connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    /// CONNACK and SUBACK, then no reply to any request.
    Silent,
    /// Nothing at all: the connection (TCP, TLS, CONNACK) never completes.
    NeverConnects,
    /// CONNACK and SUBACK, then 503 with this retry-after to every request.
    Unavailable { retry_after: u32 },
}

#[derive(Debug, Default)]
struct Run {
    /// The first fault or transient reply, from the start.
    first_fault: Option<Duration>,
    /// Every `Failed` callout, from the start.
    failed: Vec<Duration>,
    connects: u32,
    key_unauthorized: u32,
}

impl Run {
    /// From the first fault to the error path.
    fn to_outcome(&self) -> Duration {
        assert_eq!(
            self.failed.len(),
            1,
            "the error path exactly once: {self:?}"
        );
        self.failed[0] - self.first_fault.expect("a fault")
    }
}

/// Drives a session like the LL client (register at once, again `retry_after` seconds after a
/// TRANSIENT) against `server`, in 50 ms steps, for `secs` seconds.
fn drive(server: Server, reply_timeout: u64, budget: u64, attempts: u32, secs: u64) -> Run {
    let mut r = Rig::new(Auth::X509);
    r.s.settings_mut().reply_timeout = Duration::from_secs(reply_timeout);
    r.s.settings_mut().retry = RetryPolicy {
        max_attempts: attempts,
        max_time: Duration::from_secs(budget),
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
    };
    let start = r.now;
    let mut run = Run::default();
    let mut register_at = Some(start);
    for _ in 0..secs * 20 {
        if register_at.is_some_and(|at| r.now >= at) && run.failed.is_empty() {
            register_at = None;
            r.s.register().unwrap();
        }
        r.advance(Duration::from_millis(50));
        loop {
            let (acts, callouts) = (r.net(), r.callouts());
            if acts.is_empty() && callouts.is_empty() {
                break;
            }
            let since = r.now - start;
            for a in acts {
                serve(&mut r, server, &mut run, since, a);
            }
            for c in callouts {
                match c {
                    Callout::Payload(t) => r.s.payload(t, r.now, Some(b"{}".to_vec())),
                    Callout::Status {
                        status: ReplyStatus::Transient,
                        retry_after,
                    } => {
                        run.first_fault.get_or_insert(since);
                        register_at = Some(r.now + Duration::from_secs(u64::from(retry_after)));
                    }
                    Callout::Failed => run.failed.push(since),
                    Callout::KeyUnauthorized => run.key_unauthorized += 1,
                    _ => {}
                }
            }
        }
    }
    run
}

/// The scripted server's answer to one action of the session.
fn serve(r: &mut Rig, server: Server, run: &mut Run, since: Duration, action: Act) {
    match (action, server) {
        (Act::Connect, _) => run.connects += 1,
        (Act::Disconnect { graceful: false }, _) => {
            run.first_fault.get_or_insert(since);
        }
        (Act::Send(Packet::Subscribe(s)), Server::Silent | Server::Unavailable { .. }) => {
            r.packet(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::Success,
                false,
            )));
            r.packet(Packet::SubAck(SubAck::new(
                s.pkid,
                vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            )));
        }
        (Act::Send(Packet::Publish(p)), Server::Unavailable { retry_after }) => {
            let rid = p.topic.rsplit("$rid=").next().unwrap().to_owned();
            r.reply(
                &format!("$dps/registrations/res/503/?$rid={rid}&retry-after={retry_after}"),
                "{}",
            );
        }
        _ => {}
    }
}

#[test]
fn a_silent_server_ends_at_the_deadline_whatever_the_reply_timeout() {
    for budget in [2, 6, 20] {
        for reply_timeout in [1, 5, 30] {
            for attempts in [100, 1] {
                let run = drive(Server::Silent, reply_timeout, budget, attempts, 120);
                let took = run.to_outcome();
                assert_eq!(
                    run.first_fault,
                    Some(Duration::from_secs(reply_timeout) + Duration::from_millis(50)),
                    "the first fault is the first reply timeout"
                );
                let (b, t) = (
                    Duration::from_secs(budget),
                    Duration::from_secs(reply_timeout),
                );
                // With attempts to spare the deadline ends it; with one attempt the retry
                // (after a backoff of at most 0.5 s) ends with its reply timeout, unless the
                // deadline comes first.
                let step = Duration::from_millis(50);
                let latest = match attempts {
                    1 => b.min(t + Duration::from_millis(500) + step),
                    _ => b,
                };
                let earliest = match attempts {
                    1 => b.min(t),
                    _ => b,
                };
                assert!(
                    took >= earliest && took <= latest + step,
                    "budget {budget} s, reply timeout {reply_timeout} s, {attempts} attempts: error path {took:?} after the first fault"
                );
            }
        }
    }
}

#[test]
fn a_connect_that_never_completes_is_cut_at_the_deadline() {
    for (budget, reply_timeout) in [(2, 1), (2, 30), (6, 5), (20, 30)] {
        let run = drive(Server::NeverConnects, reply_timeout, budget, 100, 120);
        let took = run.to_outcome();
        assert!(
            took >= Duration::from_secs(budget)
                && took <= Duration::from_secs(budget) + Duration::from_millis(60),
            "budget {budget} s, handshake timeout {reply_timeout} s: {took:?}"
        );
        assert!(run.connects >= 2, "retried: {run:?}");
    }
}

#[test]
fn a_transient_storm_ends_at_the_deadline_even_while_the_caller_waits() {
    // retry-after 1: many replies; retry-after 5 with a 2 s budget: the deadline passes while
    // the caller waits to register again
    for (budget, retry_after) in [(2, 1), (6, 1), (2, 5), (20, 5)] {
        let run = drive(Server::Unavailable { retry_after }, 30, budget, 100, 60);
        let took = run.to_outcome();
        assert!(
            took >= Duration::from_secs(budget)
                && took <= Duration::from_secs(budget) + Duration::from_millis(60),
            "budget {budget} s, retry-after {retry_after} s: {took:?}"
        );
        assert_eq!(
            run.connects, 1,
            "a transient reply is not a connection fault"
        );
    }
}

#[test]
fn faults_and_transient_replies_share_one_budget() {
    // max_attempts 3: a drop, two 503s and another drop are four in one run
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    r.s.on_net(r.now, NetEvent::Down(Error::ConnectionLost("reset".into())));
    r.net();
    r.advance(Duration::from_secs(2));
    r.connect();
    r.callouts();
    let t = r.s.ticket();
    r.s.payload(t, r.now, Some(b"{}".to_vec()));
    r.net();
    for rid in 2..=3 {
        r.reply(&format!("$dps/registrations/res/503/?$rid={rid}"), "{}");
        assert!(matches!(
            r.callouts().as_slice(),
            [Callout::Status {
                status: ReplyStatus::Transient,
                ..
            }]
        ));
        r.s.register().unwrap();
        r.s.tick(r.now);
        r.publish_payload();
    }
    r.s.on_net(r.now, NetEvent::Down(Error::ConnectionLost("reset".into())));
    assert_eq!(r.callouts(), vec![Callout::Failed]);
}

// ---- CONNACK codes (issue 11 item 5) ------------------------------------------------------

#[test]
fn connack_3_server_unavailable_is_retried_within_the_budget() {
    let mut r = Rig::new(Auth::X509);
    let unavailable =
        || Packet::ConnAck(ConnAck::new(ConnectReturnCode::ServiceUnavailable, false));
    r.s.tick(r.now);
    r.net();
    r.packet(unavailable());
    assert_eq!(r.net(), vec![Act::Disconnect { graceful: false }]);
    assert!(
        r.callouts().is_empty(),
        "neither KEY_UNAUTHORIZED nor the error path"
    );
    r.advance(Duration::from_secs(2));
    r.connect();
    assert_eq!(
        r.callouts(),
        vec![Callout::Status {
            status: ReplyStatus::Connected,
            retry_after: 1
        }]
    );

    // always unavailable: max_attempts 3 reconnects, then the error path once
    let mut r = Rig::new(Auth::X509);
    let (mut connects, mut callouts) = (0, Vec::new());
    for _ in 0..100 {
        r.advance(Duration::from_millis(500));
        if r.net().contains(&Act::Connect) {
            connects += 1;
            r.packet(unavailable());
        }
        callouts.extend(r.callouts());
    }
    assert_eq!(connects, 4);
    assert_eq!(callouts, vec![Callout::Failed]);
}

#[test]
fn connack_1_2_4_5_are_final() {
    use ConnectReturnCode::*;
    for code in [
        RefusedProtocolVersion,
        BadClientId,
        BadUserNamePassword,
        NotAuthorized,
    ] {
        let mut r = Rig::new(Auth::X509);
        r.s.tick(r.now);
        r.net();
        r.packet(Packet::ConnAck(ConnAck::new(code, false)));
        assert_eq!(
            r.callouts(),
            vec![Callout::KeyUnauthorized, Callout::Failed],
            "{code:?}"
        );
        r.advance(Duration::from_secs(120));
        assert!(!r.net().contains(&Act::Connect), "{code:?} is not retried");
    }
}

// ---- the trace ------------------------------------------------------------------------------

#[test]
fn no_debug_of_an_action_shows_the_sas_token() {
    let mut r = Rig::new(Auth::SymmetricKey);
    r.s.tick(r.now);
    let t = r.s.ticket();
    r.callouts();
    let token = "SharedAccessSignature sr=x&sig=TOPSECRET";
    r.s.credentials(t, r.now, Some(Secret::new(token.into())));
    let actions: Vec<NetAction> = std::iter::from_fn(|| r.s.next_net_action()).collect();
    let text = format!("{actions:?}");
    assert!(text.contains("CONNECT client_id=\"dev1\""), "{text}");
    assert!(!text.contains("TOPSECRET"), "{text}");
    assert!(
        text.contains(&format!("<redacted {} bytes>", token.len())),
        "{text}"
    );
}

// ---- certificate issuance and the registration details (issue 13) ---------------------------

/// `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=dev1
/// -outform DER | base64 -w0`
const CSR_DEV1: &str = "MIHJMHECAQAwDzENMAsGA1UEAwwEZGV2MTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEGugNpF8r87bPui154dO2cQPoWIKnJCRmbmEvgm1fHm7RXNmn0ncB9SjMZjIcxgrK3L08ZKswwJAUdTw9udC6mgADAKBggqhkjOPQQDAgNIADBFAiEAv2zyvJlxoKQata+bIy5M5V+osBJ5VvyLFT0nInRRWdcCIHxZf8TYDbjgjIbNc8/jYbdZ6A8UUQpmmRwroKxIfw/q";

fn with_csr(s: &mut Settings) {
    s.csr = Some(crate::dps::csr::Csr::parse(CSR_DEV1).unwrap());
}

impl Rig {
    /// Answers the payload callout with `body`, returns the published body.
    fn publish_body(&mut self, body: &str) -> serde_json::Value {
        let ticket = match self.callouts().as_slice() {
            [.., Callout::Payload(t)] => *t,
            other => panic!("expected a payload callout, got {other:?}"),
        };
        self.s
            .payload(ticket, self.now, Some(body.as_bytes().to_vec()));
        match self.net().as_slice() {
            [Act::Send(Packet::Publish(p))] => serde_json::from_slice(&p.payload).unwrap(),
            other => panic!("expected one publish, got {other:?}"),
        }
    }

    fn connect_username(&mut self) -> String {
        self.s.tick(self.now);
        let net = self.net();
        let name = net
            .iter()
            .find_map(|a| match a {
                Act::Send(Packet::Connect(c)) => c.login.as_ref().map(|l| l.username.clone()),
                _ => None,
            })
            .unwrap();
        for a in net {
            self.s.net.push_back(match a {
                Act::Connect => NetAction::Connect,
                Act::Send(p) => NetAction::Send(crate::trace::Wire::new(p)),
                Act::Disconnect { graceful } => NetAction::Disconnect { graceful },
            });
        }
        name
    }
}

#[test]
fn a_csr_raises_the_api_version_unless_newer_or_overridden() {
    let mut r = Rig::with(Auth::X509, with_csr);
    assert!(r
        .connect_username()
        .contains("/api-version=2025-07-01-preview&"));
    let mut r = Rig::with(Auth::X509, |s| {
        with_csr(s);
        s.api_version = "2026-11-02-preview".into();
    });
    assert!(r
        .connect_username()
        .contains("/api-version=2026-11-02-preview&"));
    let mut r = Rig::with(Auth::X509, |s| {
        with_csr(s);
        s.api_version_override = Some("2019-03-31".into());
    });
    assert!(r.connect_username().contains("/api-version=2019-03-31&"));
    let mut r = Rig::new(Auth::X509);
    assert!(r.connect_username().contains("/api-version=2021-06-01&"));
}

#[test]
fn the_register_body_gets_the_csr_and_the_poll_body_never_has_it() {
    let mut r = Rig::with(Auth::X509, with_csr);
    r.connect();
    r.callouts();
    r.s.register().unwrap();
    r.s.tick(r.now);
    let body = r.publish_body(r#"{"registrationId":"dev1"}"#);
    assert_eq!(body["csr"], CSR_DEV1);
    assert_eq!(body["registrationId"], "dev1");
    r.reply(
        "$dps/registrations/res/202/?$rid=1&retry-after=1",
        r#"{"operationId":"op1","status":"assigning"}"#,
    );
    let (t, _) = r.parse_ticket();
    r.s.parsed(t, assigning("op1"));
    r.s.get_operation_status().unwrap();
    r.s.tick(r.now);
    // the SDK reuses the register JSON, its own csr included
    let body = r.publish_body(r#"{"registrationId":"dev1","csr":"theirs"}"#);
    assert_eq!(body, serde_json::json!({"registrationId":"dev1"}));
}

#[test]
fn a_register_body_that_cannot_carry_the_csr_takes_the_error_path() {
    let mut r = Rig::with(Auth::X509, with_csr);
    r.connect();
    r.callouts();
    r.s.register().unwrap();
    r.s.tick(r.now);
    let ticket = match r.callouts().as_slice() {
        [Callout::Payload(t)] => *t,
        other => panic!("{other:?}"),
    };
    r.s.payload(ticket, r.now, Some(b"[]".to_vec()));
    assert_eq!(r.callouts(), vec![Callout::Failed]);
}

#[test]
fn a_csr_for_another_registration_id_is_refused_at_open() {
    let mut settings = Settings::new(SCOPE.into(), "2021-06-01".into(), Auth::X509);
    with_csr(&mut settings);
    let mut s = Session::new(settings);
    let e = s.open("dev2").unwrap_err().to_string();
    assert!(
        e.contains("certificate_signing_request") && e.contains("dev1") && e.contains("dev2"),
        "{e}"
    );
    assert!(s.open("dev1").is_ok());
}

fn assigned() -> Option<Parsed> {
    Some(Parsed {
        status: Some(ReplyStatus::Assigned),
        operation_id: None,
    })
}

#[test]
fn with_a_hook_an_assignment_leaves_its_details_for_the_caller() {
    let mut r = Rig::with(Auth::X509, |s| s.report_info = true);
    r.register_sent();
    r.reply(
        "$dps/registrations/res/200/?$rid=1",
        r#"{"status":"assigned","registrationState":{"substatus":"initialAssignment","etag":"e1","connectionProfile":"mqttV5"}}"#,
    );
    let (t, _) = r.parse_ticket();
    assert_eq!(r.s.parsed(t, assigned()), Outcome::Assigned);
    let info = r.s.take_info().unwrap();
    assert_eq!(info.dps_status, 200);
    assert_eq!(info.connection_profile.as_deref(), Some("mqttV5"));
    assert_eq!(info.substatus.as_deref(), Some("initialAssignment"));
    assert_eq!(info.etag.as_deref(), Some("e1"));
    assert_eq!(r.s.take_info(), None, "once");
}

#[test]
fn without_a_hook_no_details_are_kept() {
    let mut r = Rig::new(Auth::X509);
    r.register_sent();
    r.reply(
        "$dps/registrations/res/200/?$rid=1",
        r#"{"status":"assigned","registrationState":{"etag":"e1"}}"#,
    );
    let (t, _) = r.parse_ticket();
    assert_eq!(r.s.parsed(t, assigned()), Outcome::Assigned);
    assert_eq!(r.s.take_info(), None);
}

#[test]
fn with_a_hook_a_dps_failure_queues_its_details_before_the_error_path() {
    let mut r = Rig::with(Auth::X509, |s| s.report_info = true);
    r.register_sent();
    r.reply(
        "$dps/registrations/res/401/?$rid=1",
        r#"{"errorCode":401002,"trackingId":"t-9","message":"CA certificate not found."}"#,
    );
    let (t, _) = r.parse_ticket();
    let parsed = Parsed {
        status: Some(ReplyStatus::Error),
        operation_id: None,
    };
    assert_eq!(r.s.parsed(t, Some(parsed)), Outcome::Nothing);
    match r.callouts().as_slice() {
        [Callout::Info(info), Callout::Failed] => {
            assert_eq!(info.dps_status, 401);
            assert_eq!(info.error_code, Some(401002));
            assert_eq!(info.tracking_id.as_deref(), Some("t-9"));
            assert_eq!(
                info.error_message.as_deref(),
                Some("CA certificate not found.")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_issued_chain_that_is_not_der_takes_the_error_path() {
    let mut r = Rig::with(Auth::X509, |s| {
        with_csr(s);
        s.report_info = true;
    });
    r.register_sent();
    r.reply(
        "$dps/registrations/res/200/?$rid=1",
        r#"{"status":"assigned","registrationState":{"issuedCertificateChain":["bm90IGRlcg=="]}}"#,
    );
    let (t, _) = r.parse_ticket();
    assert_eq!(r.s.parsed(t, assigned()), Outcome::Nothing);
    match r.callouts().as_slice() {
        [Callout::Info(info), Callout::Failed] => {
            assert_eq!(info.dps_status, 200);
            assert_eq!(info.issued_certificate_chain, None);
        }
        other => panic!("{other:?}"),
    }
}
