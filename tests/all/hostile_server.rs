//! Hostile input from the server, end to end: the C ABI driven like the SDK's LL client against a
//! scripted MQTT/TLS server (tokio + rustls + rumqttc's v4 codec, the emulator's PKI) that sends
//! what a broken or malicious DPS could: malformed reply topics, non-numeric / huge / negative
//! statuses and retry-after values, duplicate, unsolicited and stale-`$rid` replies, payloads that
//! are not UTF-8, hold a NUL, are not JSON or exceed 96 KB, QoS 2 publishes, packets a server
//! must not send, and bytes that are not MQTT. Each is ignored (the registration still
//! completes with the genuine reply) or ends in a clean error; never a crash, and the callback
//! contract holds: the data callback exactly once, statuses from the enum with retry intervals
//! in 1..=300, nothing after the outcome.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use dps_emulator::pki::Pki;
use prov_mqtt_transport::ffi::*;
use rumqttc::mqttbytes::v4::{ConnAck, Packet, Publish, SubAck, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const TIMEOUT: Duration = Duration::from_secs(30);

// Each case runs over MQTT/TLS and over MQTT/WSS.
both!(
    malformed_reply_topics_are_ignored,
    hostile_retry_after_values_become_one_second,
    duplicate_unsolicited_and_stale_replies_are_ignored,
    a_payload_that_is_not_utf8_takes_the_error_path_once,
    a_payload_with_a_nul_takes_the_error_path_once,
    a_payload_that_is_not_json_reaches_the_parser_which_refuses_it,
    an_error_status_with_a_hostile_body_is_a_clean_error,
    a_packet_over_96_kb_is_refused_and_the_registration_recovers,
    a_qos2_publish_is_ignored_and_not_acknowledged,
    packets_a_server_must_not_send_and_garbage_bytes_are_survived,
    a_reply_then_a_close_mid_packet_is_survived,
);
const HUB: &str = "hostile-test-hub.azure-devices.net";

/// What the device asked for.
#[derive(Debug, Clone)]
struct Request {
    /// The CONNECT's client id (the registration id).
    regid: String,
    /// 1-based connection number.
    conn: usize,
    /// 0-based over the server's lifetime (register and poll requests).
    nth: usize,
    kind: Kind,
    rid: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Right after SUBACK, before any request: a chance for unsolicited replies.
    Subscribed,
    Register,
    Poll,
}

/// What the server sends back.
#[derive(Debug, Clone)]
enum Out {
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
    },
    /// Any packet (a server must not send some of them).
    Packet(Packet),
    Raw(Vec<u8>),
    Close,
}

fn publish(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Out {
    Out::Publish {
        topic: topic.into(),
        payload: payload.into(),
        qos: QoS::AtLeastOnce,
    }
}

fn assigning_body() -> String {
    r#"{"operationId":"4.op.1","status":"assigning"}"#.into()
}

fn assigned_body(hub: &str, regid: &str) -> String {
    serde_json::json!({
        "operationId": "4.op.1",
        "status": "assigned",
        "registrationState": {
            "registrationId": regid,
            "assignedHub": hub,
            "deviceId": regid,
            "status": "assigned",
            "substatus": "initialAssignment"
        }
    })
    .to_string()
}

/// The genuine final answer to a request: 200 assigned with `$rid` echoed.
fn assigned(r: &Request) -> Out {
    publish(
        format!("$dps/registrations/res/200/?$rid={}", r.rid),
        assigned_body(HUB, &r.regid),
    )
}

/// The genuine 202 answer with a retry-after of 1 s.
fn assigning(r: &Request) -> Out {
    publish(
        format!("$dps/registrations/res/202/?$rid={}&retry-after=1", r.rid),
        assigning_body(),
    )
}

type Script = dyn Fn(&Request) -> Vec<Out> + Send + Sync;

/// A scripted DPS: answers CONNECT and SUBSCRIBE, PINGREQ, and hands every register/poll
/// request to the script.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Packets the device sent, by type name, in order.
    received: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

impl Server {
    fn start(
        pki: &Pki,
        proto: Proto,
        script: impl Fn(&Request) -> Vec<Out> + Send + Sync + 'static,
    ) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let acceptor = tokio_rustls::TlsAcceptor::from(testkit::tls::server_config(pki));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accept = {
            let (connections, received) = (connections.clone(), received.clone());
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let conn = connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let (acceptor, script, received, requests) = (
                        acceptor.clone(),
                        script.clone(),
                        received.clone(),
                        requests.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        match proto {
                            Proto::Mqtt => serve(tls, conn, script, received, requests).await,
                            Proto::Ws => {
                                // binary WebSocket messages as a byte stream; the server may
                                // send (and read) messages far over the DPS limit
                                if let Ok((ws, _)) = dps_emulator::ws::accept(tls, 1 << 20).await {
                                    serve(ws, conn, script, received, requests).await;
                                }
                            }
                        }
                    });
                }
            }
        };
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            })
        });
        Server {
            addr,
            connections,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// What the server read once the device's DISCONNECT arrived (the device has written it
    /// when `close` returns, but this server may not have read it yet), waiting up to 2 s.
    fn received_through_disconnect(&self) -> Vec<String> {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until
            && !self.received().iter().any(|p| p == "Disconnect")
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.received()
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    conn: usize,
    script: Arc<Script>,
    received: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
) {
    let mut inbound = BytesMut::new();
    let mut pkid = 0u16;
    let mut regid = String::new();
    loop {
        let packet = loop {
            match Packet::read(&mut inbound, 1 << 20) {
                Ok(p) => break p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    match io.read_buf(&mut inbound).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                Err(_) => return,
            }
        };
        let name = match &packet {
            Packet::Publish(p) => format!("PUBLISH {}", p.topic),
            other => format!("{other:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_owned(),
        };
        received.lock().unwrap().push(name);
        let mut outs = Vec::new();
        let request = |kind: Kind, rid: String| {
            let nth = match kind {
                Kind::Subscribed => requests.load(Ordering::SeqCst),
                _ => requests.fetch_add(1, Ordering::SeqCst),
            };
            script(&Request {
                regid: regid.clone(),
                conn,
                nth,
                kind,
                rid,
            })
        };
        match packet {
            Packet::Connect(c) => {
                regid = c.client_id.clone();
                outs.push(Out::Packet(Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::Success,
                })))
            }
            Packet::Subscribe(s) => {
                outs.push(Out::Packet(Packet::SubAck(SubAck {
                    pkid: s.pkid,
                    return_codes: vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
                })));
                outs.extend(request(Kind::Subscribed, String::new()));
            }
            Packet::PingReq => outs.push(Out::Packet(Packet::PingResp)),
            Packet::Disconnect => return,
            Packet::Publish(p) => {
                let rid = p
                    .topic
                    .split("$rid=")
                    .nth(1)
                    .and_then(|r| r.split('&').next())
                    .unwrap_or("")
                    .to_owned();
                let kind = match p.topic.contains("iotdps-register") {
                    true => Kind::Register,
                    false => Kind::Poll,
                };
                outs.extend(request(kind, rid));
            }
            _ => {}
        }
        let mut bytes = BytesMut::new();
        for out in outs {
            match out {
                Out::Publish {
                    topic,
                    payload,
                    qos,
                } => {
                    let mut p = Publish::new(topic, qos, payload);
                    if qos != QoS::AtMostOnce {
                        pkid = pkid.wrapping_add(1).max(1);
                        p.pkid = pkid;
                    }
                    Packet::Publish(p).write(&mut bytes, 1 << 20).unwrap();
                }
                Out::Packet(p) => {
                    p.write(&mut bytes, 1 << 20).unwrap();
                }
                Out::Raw(raw) => bytes.extend_from_slice(&raw),
                Out::Close => {
                    let _ = io.write_all(&bytes).await;
                    let _ = io.shutdown().await;
                    return;
                }
            }
        }
        if !bytes.is_empty() && io.write_all(&bytes).await.is_err() {
            return;
        }
        let _ = io.flush().await;
    }
}

fn run(
    proto: Proto,
    regid: &str,
    script: impl Fn(&Request) -> Vec<Out> + Send + Sync + 'static,
) -> (Outcome, Server) {
    let pki = Pki::generate(&[regid]);
    let server = Server::start(&pki, proto, script);
    // small budgets so that every case ends in seconds
    let device = Device::new(
        proto,
        format!("localhost:{}", server.addr.port()),
        regid,
        x509(&pki, regid),
    )
    .trusting(&pki.root_ca_pem)
    .options(&[
        ("reply_timeout_secs", 5),
        ("retry_initial_ms", 50),
        ("retry_max_attempts", 3),
    ]);
    let outcome = register(&device, TIMEOUT);
    check_contract(&outcome);
    (outcome, server)
}

/// What every case must satisfy, whatever the server did.
fn check_contract(o: &Outcome) {
    assert_eq!(
        o.data_callbacks, 1,
        "the outcome is reported exactly once: {o:?}"
    );
    for (status, retry) in &o.statuses {
        assert!(
            (PROV_DEVICE_TRANSPORT_STATUS_CONNECTED as u32
                ..=PROV_DEVICE_TRANSPORT_STATUS_DISABLED as u32)
                .contains(&(*status as u32)),
            "{o:?}"
        );
        assert!((1..=300).contains(retry), "retry interval {retry}: {o:?}");
    }
    assert!(o.elapsed < TIMEOUT, "ended before the test timeout: {o:?}");
}

fn assert_assigned(o: &Outcome, regid: &str) {
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
    assert_eq!(o.hub.as_deref(), Some(HUB), "{o:?}");
    assert_eq!(o.device_id.as_deref(), Some(regid));
}

fn assert_error(o: &Outcome) {
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    assert_eq!(o.hub, None);
}

fn logged(regid: &str, needle: &str) -> bool {
    logs_for(regid).iter().any(|l| l.contains(needle))
}

fn malformed_reply_topics_are_ignored(proto: Proto) {
    let regid = &format!("hostile-topics-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match r.kind {
        Kind::Register => {
            let rid = &r.rid;
            let mut outs: Vec<Out> = [
                format!("$dps/registrations/res/abc/?$rid={rid}"),
                format!("$dps/registrations/res/-20/?$rid={rid}"),
                format!("$dps/registrations/res/99999999999999999999/?$rid={rid}"),
                format!("$dps/registrations/res/600/?$rid={rid}"),
                format!("$dps/registrations/res/099/?$rid={rid}"),
                format!("$dps/registrations/res//?$rid={rid}"),
                format!("$dps/registrations/res/200?$rid={rid}"),
                "$dps/registrations/res/200".to_owned(),
                format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
                format!("other/topic/?$rid={rid}"),
                String::new(),
                // 20 KB of parameters, and a $rid that is not the outstanding one
                format!(
                    "$dps/registrations/res/200/?{}$rid={rid}9",
                    "x=y&".repeat(5000)
                ),
            ]
            .into_iter()
            .map(|t| publish(t, assigned_body("evil-hub", &r.regid)))
            .collect();
            outs.push(assigned(r));
            outs
        }
        _ => vec![],
    });
    assert_assigned(&o, regid);
    // every malformed one was logged as ignored
    assert!(logged(regid, "is not a number from 100 to 599"));
    assert!(logged(regid, "has no '/?' query part"));
    assert!(logged(regid, "is not a DPS reply topic"));
    assert_eq!(server.connections(), 1, "nothing worth a reconnect");
}

fn hostile_retry_after_values_become_one_second(proto: Proto) {
    for (i, value) in [
        "-5",
        "abc",
        "99999999999999999999999",
        "0",
        "301",
        "",
        "1e3",
        "%00",
    ]
    .into_iter()
    .enumerate()
    {
        let regid = format!("hostile-retry-{i}-{}", proto.tag());
        let (o, _server) = run(proto, &regid, move |r| match r.kind {
            Kind::Register => vec![publish(
                format!(
                    "$dps/registrations/res/202/?retry-after={value}&$rid={}",
                    r.rid
                ),
                assigning_body(),
            )],
            Kind::Poll => vec![assigned(r)],
            Kind::Subscribed => vec![],
        });
        assert_assigned(&o, &regid);
        assert!(
            o.statuses
                .contains(&(PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING, 1)),
            "retry-after {value:?}: {o:?}"
        );
    }
    // A 429 with a huge retry-after is transient with 1 s, then the register is re-sent.
    let regid = &format!("hostile-retry-429-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match (r.kind, r.nth) {
        (Kind::Register, 0) => vec![publish(
            format!(
                "$dps/registrations/res/429/?$rid={}&retry-after=4294967296",
                r.rid
            ),
            b"\xff\xfe not json".to_vec(),
        )],
        (Kind::Register, _) => vec![assigned(r)],
        _ => vec![],
    });
    assert_assigned(&o, regid);
    assert!(o
        .statuses
        .contains(&(PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT, 1)));
    let registers = server
        .received()
        .iter()
        .filter(|p| p.contains("iotdps-register"))
        .count();
    assert_eq!(registers, 2, "{:?}", server.received());
}

fn duplicate_unsolicited_and_stale_replies_are_ignored(proto: Proto) {
    let regid = &format!("hostile-dupes-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match r.kind {
        // before any request: a reply nobody asked for
        Kind::Subscribed => vec![
            publish(
                "$dps/registrations/res/200/?$rid=77",
                assigned_body("evil-hub", &r.regid),
            ),
            publish(
                "$dps/registrations/res/202/?$rid=0&retry-after=3",
                assigning_body(),
            ),
        ],
        Kind::Register => vec![
            // wrong rids, a missing rid, then the genuine reply twice
            publish(
                format!("$dps/registrations/res/200/?$rid={}0", r.rid),
                assigned_body("evil-hub", &r.regid),
            ),
            publish(
                format!("$dps/registrations/res/200/?$rid=+{}", r.rid),
                assigned_body("evil-hub", &r.regid),
            ),
            publish(
                "$dps/registrations/res/200/?retry-after=1",
                assigned_body("evil-hub", &r.regid),
            ),
            assigning(r),
            assigning(r),
        ],
        Kind::Poll => vec![
            // the register's rid again (stale) with a different outcome, then the genuine one,
            // twice
            publish(
                format!(
                    "$dps/registrations/res/200/?$rid={}",
                    r.rid.parse::<u32>().unwrap() - 1
                ),
                assigned_body("evil-hub", &r.regid),
            ),
            assigned(r),
            assigned(r),
        ],
    });
    assert_assigned(&o, regid);
    let assigning = o
        .statuses
        .iter()
        .filter(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING)
        .count();
    assert_eq!(assigning, 1, "the duplicate 202 is not reported: {o:?}");
    assert!(logged(regid, "ignored an unsolicited reply"));
    assert!(logged(regid, "ignored a reply with $rid="));
    // every QoS 1 reply was acknowledged, ignored or not
    let received = server.received_through_disconnect();
    let acks = received.iter().filter(|p| *p == "PubAck").count();
    assert!(acks >= 9, "{received:?}");
}

fn a_payload_that_is_not_utf8_takes_the_error_path_once(proto: Proto) {
    let regid = &format!("hostile-utf8-{}", proto.tag());
    let (o, server) = run(proto, regid, |r| match r.kind {
        Kind::Register => vec![publish(
            format!("$dps/registrations/res/200/?$rid={}", r.rid),
            b"{\"status\":\"assigned\xff\xfe\"}".to_vec(),
        )],
        _ => vec![],
    });
    assert_error(&o);
    assert!(logged(regid, "not UTF-8"));
    assert_eq!(server.connections(), 1, "not retried");
}

fn a_payload_with_a_nul_takes_the_error_path_once(proto: Proto) {
    let regid = &format!("hostile-nul-{}", proto.tag());
    let (o, _server) = run(proto, regid, move |r| match r.kind {
        Kind::Register => {
            let mut body = assigned_body(HUB, &r.regid).into_bytes();
            body.insert(10, 0);
            vec![publish(
                format!("$dps/registrations/res/200/?$rid={}", r.rid),
                body,
            )]
        }
        _ => vec![],
    });
    assert_error(&o);
    assert!(logged(regid, "NUL byte at offset 10"));
}

fn a_payload_that_is_not_json_reaches_the_parser_which_refuses_it(proto: Proto) {
    let regid = &format!("hostile-notjson-{}", proto.tag());
    let (o, _server) = run(proto, regid, |r| match r.kind {
        Kind::Register => vec![publish(
            format!("$dps/registrations/res/200/?$rid={}", r.rid),
            "<html>502 Bad Gateway</html>",
        )],
        _ => vec![],
    });
    assert_error(&o);
    assert!(logged(regid, "JSON parse callback returned NULL"));
}

fn an_error_status_with_a_hostile_body_is_a_clean_error(proto: Proto) {
    let regid = &format!("hostile-errbody-{}", proto.tag());
    let (o, _server) = run(proto, regid, |r| match r.kind {
        Kind::Register => vec![publish(
            format!("$dps/registrations/res/401/?$rid={}", r.rid),
            r#"{"errorCode":"401002\n<script>","trackingId":{"x":[1,2]},"message":null}"#,
        )],
        _ => vec![],
    });
    assert_error(&o);
    assert!(logged(regid, "DPS replied 401"), "{:?}", logs_for(regid));
}

fn a_packet_over_96_kb_is_refused_and_the_registration_recovers(proto: Proto) {
    let regid = &format!("hostile-huge-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match (r.kind, r.conn) {
        (Kind::Register, 1) => {
            let mut body = assigned_body("evil-hub", &r.regid);
            body.push_str(&" ".repeat(96 * 1024));
            vec![publish(
                format!("$dps/registrations/res/200/?$rid={}", r.rid),
                body,
            )]
        }
        (Kind::Register, _) => vec![assigned(r)],
        _ => vec![],
    });
    assert_assigned(&o, regid);
    assert_eq!(server.connections(), 2, "reconnected after the refusal");
    assert!(
        // over TLS the MQTT decoder refuses it from its header; over WSS the WebSocket layer
        // refuses the message (its limit is the packet limit plus the frame header)
        logs_for(regid)
            .iter()
            .any(|l| l.contains("96 KB") || l.contains("WebSocket message too large")),
        "{:?}",
        logs_for(regid)
    );
}

fn a_qos2_publish_is_ignored_and_not_acknowledged(proto: Proto) {
    let regid = &format!("hostile-qos2-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match r.kind {
        Kind::Register => vec![
            Out::Publish {
                topic: format!("$dps/registrations/res/200/?$rid={}", r.rid),
                payload: assigned_body("evil-hub", &r.regid).into_bytes(),
                qos: QoS::ExactlyOnce,
            },
            Out::Publish {
                topic: format!("$dps/registrations/res/200/?$rid={}", r.rid),
                payload: assigned_body(HUB, &r.regid).into_bytes(),
                qos: QoS::AtMostOnce,
            },
        ],
        _ => vec![],
    });
    assert_assigned(&o, regid);
    assert!(logged(regid, "ignored a QoS 2 message"));
    let received = server.received();
    assert!(
        !received.iter().any(|p| p == "PubRec"),
        "no QoS 2 handshake: {received:?}"
    );
}

fn packets_a_server_must_not_send_and_garbage_bytes_are_survived(proto: Proto) {
    // Each case breaks the first connection; the second answers properly.
    let cases: Vec<(&str, Out)> = vec![
        (
            "a SUBSCRIBE from the server",
            Out::Packet(Packet::Subscribe(rumqttc::mqttbytes::v4::Subscribe::new(
                "#",
                QoS::AtLeastOnce,
            ))),
        ),
        ("reserved packet type 15", Out::Raw(vec![0xF0, 0x00])),
        (
            "remaining length over 4 bytes",
            Out::Raw(vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        ),
        (
            "topic length beyond the packet",
            Out::Raw(vec![0x32, 0x03, 0x00, 0x10, b'a']),
        ),
        (
            "QoS 3 publish",
            Out::Raw(vec![0x36, 0x03, 0x00, 0x01, b'a']),
        ),
        (
            "topic not UTF-8",
            Out::Raw(vec![0x30, 0x05, 0x00, 0x03, 0xff, 0xfe, 0xfd]),
        ),
        ("a second CONNACK", Out::Raw(vec![0x20, 0x02, 0x00, 0x00])),
    ];
    for (i, (what, bad)) in cases.into_iter().enumerate() {
        let regid = format!("hostile-packet-{i}-{}", proto.tag());
        let (o, server) = run(proto, &regid, move |r| match (r.kind, r.conn) {
            (Kind::Register, 1) => vec![bad.clone()],
            (Kind::Register, _) => vec![assigned(r)],
            _ => vec![],
        });
        assert_assigned(&o, &regid);
        assert_eq!(server.connections(), 2, "{what}: one reconnect");
    }
}

fn a_reply_then_a_close_mid_packet_is_survived(proto: Proto) {
    let regid = &format!("hostile-truncated-{}", proto.tag());
    let (o, server) = run(proto, regid, move |r| match (r.kind, r.conn) {
        (Kind::Register, 1) => {
            // half a PUBLISH, then the connection ends
            let mut bytes = BytesMut::new();
            Packet::Publish(Publish::new(
                format!("$dps/registrations/res/200/?$rid={}", r.rid),
                QoS::AtMostOnce,
                assigned_body("evil-hub", &r.regid),
            ))
            .write(&mut bytes, 1 << 20)
            .unwrap();
            bytes.truncate(bytes.len() / 2);
            vec![Out::Raw(bytes.to_vec()), Out::Close]
        }
        (Kind::Register, _) => vec![assigned(r)],
        _ => vec![],
    });
    assert_assigned(&o, regid);
    assert_eq!(server.connections(), 2);
}
