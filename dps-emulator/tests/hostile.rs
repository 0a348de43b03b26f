//! Hostile and broken clients lose only their own connection; WebSocket framing; the timeline.

mod common;
use common::*;
use dps_emulator::Emulator;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

fn quick_timeouts() -> (Emulator, dps_emulator::Pki) {
    emulator(&[], |c| c.with_connect_timeout(Duration::from_millis(1000)))
}

/// A well-behaved device that connected before the trouble still registers after it.
async fn bystander(emu: &Emulator, pki: &dps_emulator::Pki) -> Client {
    let mut c = Client::open(Transport::Tls, emu, pki, None).await.unwrap();
    c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    c
}

async fn still_serves(mut c: Client) {
    let r = c.register_to_end("sym1").await;
    assert_eq!(r.last().unwrap().status, 200);
}

async fn connected(emu: &Emulator, pki: &dps_emulator::Pki, t: Transport) -> Client {
    let mut c = Client::open(t, emu, pki, None).await.unwrap();
    assert_eq!(
        c.connect("sym1", Some(&sas_for("sym1", KEY))).await,
        Ok(ConnectReturnCode::Success)
    );
    c
}

#[tokio::test]
async fn malformed_packets_close_only_that_connection() {
    let (emu, pki) = emulator(&[], |c| c);
    let good = bystander(&emu, &pki).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved packet type 15", vec![0xF0, 0x00]),
        (
            "remaining length over 4 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            "topic length beyond the packet",
            vec![0x30, 0x03, 0x00, 0x10, b'a'],
        ),
        ("QoS 3 publish", vec![0x36, 0x03, 0x00, 0x01, b'a']),
        ("subscribe without filters", vec![0x82, 0x02, 0x00, 0x01]),
    ];
    for (what, bytes) in cases {
        let mut c = connected(&emu, &pki, Transport::Tls).await;
        c.send_raw(&bytes).await.unwrap();
        assert!(c.closed_within(WAIT).await, "{what}: connection closed");
    }
    // garbage instead of CONNECT
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(c.closed_within(WAIT).await);
    assert!(wait_log(&emu, "malformed packet", WAIT).await);
    still_serves(good).await;
}

#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let (emu, pki) = emulator(&[], |c| c);
    let good = bystander(&emu, &pki).await;
    // a first packet that is not CONNECT
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.send(Packet::PingReq).await.unwrap();
    assert!(c.closed_within(WAIT).await);
    // a second CONNECT
    let mut c = connected(&emu, &pki, Transport::Tls).await;
    c.send(Packet::Connect(Client::connect_packet("sym1", None)))
        .await
        .unwrap();
    assert!(c.closed_within(WAIT).await);
    // QoS 2
    let mut c = connected(&emu, &pki, Transport::Tls).await;
    let mut p = Publish::new(
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        QoS::ExactlyOnce,
        "{}",
    );
    p.pkid = 1;
    c.send(Packet::Publish(p)).await.unwrap();
    assert!(c.closed_within(WAIT).await);
    assert!(wait_log(&emu, "QoS 2 PUBLISH", WAIT).await);
    still_serves(good).await;
}

#[tokio::test]
async fn oversized_packets_close_the_connection() {
    let (emu, pki) = emulator(&[], |c| c);
    let good = bystander(&emu, &pki).await;
    // a header announcing 200 000 bytes: closed before the body is even sent
    let mut c = connected(&emu, &pki, Transport::Tls).await;
    c.send_raw(&[0x30, 0xC0, 0x9A, 0x0C]).await.unwrap();
    assert!(c.closed_within(WAIT).await);
    // a real 100 KB publish, over TLS and over WSS
    for t in [Transport::Tls, Transport::Wss] {
        let mut c = connected(&emu, &pki, t).await;
        let big = vec![b'x'; 100 * 1024];
        let _ = c
            .publish(
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                &big,
                QoS::AtMostOnce,
            )
            .await;
        assert!(c.closed_within(WAIT).await);
    }
    assert!(wait_log(&emu, "exceeds the 98304-byte limit", WAIT).await);
    // just under the limit is fine (an unknown topic is ignored, the connection lives on)
    let mut c = connected(&emu, &pki, Transport::Tls).await;
    let body = vec![b'y'; 98_304 - 64];
    c.publish("x/y", &body, QoS::AtMostOnce).await.unwrap();
    c.send(Packet::PingReq).await.unwrap();
    assert_eq!(c.recv(WAIT).await, Ok(Packet::PingResp));
    still_serves(good).await;
}

#[tokio::test]
async fn silent_clients_are_closed() {
    let (emu, pki) = quick_timeouts();
    let good = bystander(&emu, &pki).await;
    // TCP only, no TLS handshake
    let mut tcp = tokio::net::TcpStream::connect(emu.mqtt_addr())
        .await
        .unwrap();
    // TLS but no CONNECT
    let mut quiet = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    let t = Instant::now();
    assert!(quiet.closed_within(WAIT).await);
    assert!(t.elapsed() < Duration::from_secs(3));
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(wait_log(&emu, "no CONNECT within", WAIT).await);
    assert!(wait_log(&emu, "TLS handshake timed out", WAIT).await);
    // the bystander is past CONNECT with keep-alive 0: no timeout applies to it
    still_serves(good).await;
}

#[tokio::test]
async fn slow_clients_stalling_mid_packet_are_closed() {
    let (emu, pki) = quick_timeouts();
    let mut c = connected(&emu, &pki, Transport::Tls).await;
    let ping = Client::encode(&Packet::Publish(Publish::new(
        "a/b",
        QoS::AtMostOnce,
        "hello",
    )));
    c.send_raw(&ping[..3]).await.unwrap();
    assert!(c.closed_within(WAIT).await);
    assert!(wait_log(&emu, "stalled in the middle of a packet", WAIT).await);
}

#[tokio::test]
async fn keep_alive_is_enforced_and_pings_keep_a_client_alive() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    let mut connect = Client::connect_packet("sym1", Some(&sas_for("sym1", KEY)));
    connect.keep_alive = 1;
    assert_eq!(
        c.connect_with(connect.clone()).await,
        Ok(ConnectReturnCode::Success)
    );
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send(Packet::PingReq).await.unwrap();
        assert_eq!(c.recv(WAIT).await, Ok(Packet::PingResp));
    }
    let t = Instant::now();
    assert!(c.closed_within(WAIT).await);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(wait_log(&emu, "silent for 1.5 x its keep-alive", WAIT).await);
}

#[tokio::test]
async fn random_bytes_after_connect_never_take_the_emulator_down() {
    let (emu, pki) = quick_timeouts();
    let good = bystander(&emu, &pki).await;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..60 {
        let mut c = connected(
            &emu,
            &pki,
            if round % 2 == 0 {
                Transport::Tls
            } else {
                Transport::Wss
            },
        )
        .await;
        let len = (next() % 64) as usize + 1;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // mostly plausible packet types, to get past the first byte
        bytes[0] = (bytes[0] & 0x0F) | (((next() % 14) as u8 + 1) << 4);
        c.send_raw(&bytes).await.unwrap();
        // either closed, or still serving: a ping must get an answer or a close
        let _ = c.send(Packet::PingReq).await;
        let _ = c.recv(Duration::from_millis(300)).await;
    }
    still_serves(good).await;
    let again = bystander(&emu, &pki).await;
    drop(again);
}

#[tokio::test]
async fn wss_accepts_upper_case_subprotocol_and_echoes_it() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut c = Client::wss(emu.ws_addr(), &pki.root_ca_pem, None, "MQTT")
        .await
        .unwrap();
    c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    assert!(wait_log(&emu, "subprotocol \"MQTT\"", WAIT).await);
}

#[tokio::test]
async fn wss_refuses_wrong_path_or_missing_subprotocol() {
    let (emu, pki) = emulator(&[], |c| c);
    let s = tls_stream(emu.ws_addr(), &pki.root_ca_pem, None)
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{}/mqtt", emu.ws_addr().port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    assert!(tokio_tungstenite::client_async(req, s).await.is_err());
    assert!(wait_log(&emu, "WebSocket path \"/mqtt\"", WAIT).await);

    let s = tls_stream(emu.ws_addr(), &pki.root_ca_pem, None)
        .await
        .unwrap();
    let req = format!("wss://localhost:{}/$iothub/websocket", emu.ws_addr().port())
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::client_async(req, s).await.is_err());
    assert!(wait_log(&emu, "without the mqtt subprotocol", WAIT).await);
}

#[tokio::test]
async fn wss_packets_may_span_messages_and_share_them() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut c = Client::open(Transport::Wss, &emu, &pki, None)
        .await
        .unwrap();
    let connect = Client::encode(&Packet::Connect(Client::connect_packet(
        "sym1",
        Some(&sas_for("sym1", KEY)),
    )));
    // CONNECT in three WebSocket messages
    c.send_raw(&connect[..1]).await.unwrap();
    c.send_raw(&connect[1..10]).await.unwrap();
    c.send_raw(&connect[10..]).await.unwrap();
    match c.recv(WAIT).await.unwrap() {
        Packet::ConnAck(a) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("{other:?}"),
    }
    // SUBSCRIBE and the register request in one message
    let mut s =
        rumqttc::mqttbytes::v4::Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    s.pkid = 1;
    let mut both = Client::encode(&Packet::Subscribe(s));
    both.extend(Client::encode(&Packet::Publish(Publish::new(
        "$dps/registrations/PUT/iotdps-register/?$rid=1",
        QoS::AtMostOnce,
        r#"{"registrationId":"sym1"}"#,
    ))));
    c.send_raw(&both).await.unwrap();
    assert!(matches!(c.recv(WAIT).await, Ok(Packet::SubAck(_))));
    assert_eq!(c.reply(WAIT).await.unwrap().status, 202);
}

#[tokio::test]
async fn wss_text_messages_close_the_connection() {
    let (emu, pki) = emulator(&[], |c| c);
    let s = tls_stream(emu.ws_addr(), &pki.root_ca_pem, None)
        .await
        .unwrap();
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{}/$iothub/websocket", emu.ws_addr().port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, s).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    assert!(wait_log(&emu, "text message", WAIT).await);
}

#[tokio::test]
async fn timeline_records_every_packet_and_writes_one_line_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("timeline.jsonl");
    let (emu, pki) = emulator(&[], |c| c.with_timeline(&file));
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    let replies = c.register_to_end("sym1").await;
    assert_eq!(replies.len(), 3);
    c.send(Packet::Disconnect).await.unwrap();
    assert!(c.closed_within(WAIT).await);
    let mut other = Client::open(Transport::Wss, &emu, &pki, None)
        .await
        .unwrap();
    other.start("sym1", Some(&sas_for("sym1", KEY))).await;
    other.io_shutdown().await;
    assert!(wait_log(&emu, "conn 2 ws sym1: closed", WAIT).await);
    assert_eq!(emu.connections_accepted(), 2);

    let tl = emu.timeline();
    let conn1: Vec<_> = tl.iter().filter(|e| e.conn == 1).collect();
    let seq: Vec<String> = conn1
        .iter()
        .map(|e| format!("{} {}", e.dir, e.packet))
        .collect();
    assert_eq!(
        seq,
        [
            "in ACCEPT",
            "in CONNECT",
            "out CONNACK",
            "in SUBSCRIBE",
            "out SUBACK",
            "in PUBLISH",
            "out PUBLISH",
            "in PUBACK", // register
            "in PUBLISH",
            "out PUBLISH",
            "in PUBACK", // poll 1
            "in PUBLISH",
            "out PUBLISH",
            "in PUBACK", // poll 2
            "in DISCONNECT",
            "out CLOSE",
        ]
    );
    assert!(conn1.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
    assert!(conn1[1..]
        .iter()
        .all(|e| e.regid.as_deref() == Some("sym1")));
    let out_pub = conn1
        .iter()
        .find(|e| e.dir == "out" && e.packet == "PUBLISH")
        .unwrap();
    assert_eq!(
        out_pub.topic.as_deref(),
        Some("$dps/registrations/res/202/?$rid=1&retry-after=1")
    );
    assert!(out_pub.bytes > 60);

    emu.shutdown();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = lines.iter().find(|l| l["conn"] == 1).unwrap();
    assert_eq!(first["transport"], "mqtt");
    assert_eq!(first["regid"], "sym1");
    assert_eq!(first["events"].as_array().unwrap().len(), 16);
    assert_eq!(first["events"][2]["packet"], "CONNACK");
    assert!(first["events"][2]["t_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn shutdown_with_open_connections_does_not_hang() {
    let (emu, pki) = emulator(&[], |c| c);
    let _a = bystander(&emu, &pki).await;
    let mut b = Client::open(Transport::Wss, &emu, &pki, None)
        .await
        .unwrap();
    let t = Instant::now();
    emu.shutdown();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(b.closed_within(WAIT).await);
}

#[tokio::test]
async fn plain_tcp_garbage_fails_the_tls_handshake_only() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut tcp = tokio::net::TcpStream::connect(emu.mqtt_addr())
        .await
        .unwrap();
    tcp.write_all(&[0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 0])
        .await
        .unwrap();
    assert!(wait_log(&emu, "TLS handshake failed", WAIT).await);
    still_serves(bystander(&emu, &pki).await).await;
}
