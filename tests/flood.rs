//! Inbound data has a bound: a scripted server (TLS, or WSS) answers CONNECT and SUBSCRIBE and
//! then streams unsolicited QoS 1 PUBLISHes as fast as TCP takes them for a few seconds before
//! it answers the register request. The library reads only as fast as `dowork` takes events (a
//! small queue, then TCP pushes back), so the process does not grow with the flood; one `dowork`
//! hands at most `MAX_EVENTS_PER_DOWORK` events to the session; and the registration completes
//! with the genuine reply behind the flood.
//!
//! One test in its own binary: it reads the process-wide count of delivered events around each
//! `dowork`, and the process's RSS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dps_emulator::pki::Pki;
use prov_mqtt_transport::ffi::PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK;
use prov_mqtt_transport::net::events_delivered;
use prov_mqtt_transport::transport::MAX_EVENTS_PER_DOWORK;
use rumqttc::mqttbytes::v4::{ConnAck, Packet, Publish, SubAck, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;
use testkit::{x509, Device, Ll, Proto};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the server floods before it answers.
const FLOOD: Duration = Duration::from_secs(3);
const HUB: &str = "flood-hub.azure-devices.net";
/// A generous bound on what the flood may add to this process.
const MAX_GROWTH_MB: f64 = 50.0;

fn rss_mb() -> f64 {
    testkit::process::figures().rss_mb()
}

/// The flooding DPS: counts the PUBLISHes it wrote.
struct Flooder {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
}

fn flooder(pki: &Pki, proto: Proto) -> Flooder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let acceptor = tokio_rustls::TlsAcceptor::from(testkit::tls::server_config(pki));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            match proto {
                Proto::Mqtt => serve(tls, counter).await,
                Proto::Ws => {
                    let (ws, _) = dps_emulator::ws::accept(tls, 1 << 20).await.unwrap();
                    serve(ws, counter).await
                }
            }
        })
    });
    Flooder { addr, sent }
}

async fn next_packet<S: AsyncRead + Unpin>(io: &mut S, inbound: &mut BytesMut) -> Option<Packet> {
    loop {
        match Packet::read(inbound, 1 << 20) {
            Ok(p) => return Some(p),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if io.read_buf(inbound).await.ok()? == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

fn bytes_of(packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, 1 << 20).unwrap();
    out.to_vec()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, sent: Arc<AtomicU64>) {
    let (mut rx, mut tx) = tokio::io::split(io);
    let mut inbound = BytesMut::new();
    let mut regid = String::new();
    // CONNECT, SUBSCRIBE: answered at once
    for _ in 0..2 {
        let reply = match next_packet(&mut rx, &mut inbound).await {
            Some(Packet::Connect(c)) => {
                regid = c.client_id;
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))
            }
            Some(Packet::Subscribe(s)) => Packet::SubAck(SubAck::new(
                s.pkid,
                vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            )),
            other => panic!("expected CONNECT, SUBSCRIBE: {other:?}"),
        };
        tx.write_all(&bytes_of(reply)).await.unwrap();
    }
    // The reader takes the device's packets (PUBACKs, the register request) off the wire.
    let (rid_tx, mut rid_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(packet) = next_packet(&mut rx, &mut inbound).await {
            if let Packet::Publish(p) = packet {
                if p.topic.contains("iotdps-register") {
                    let rid = p.topic.split("$rid=").nth(1).unwrap_or("").to_owned();
                    let _ = rid_tx.send(rid);
                }
            }
        }
    });
    let started = Instant::now();
    let mut pkid = 0u16;
    let mut rid = None;
    loop {
        if let Ok(r) = rid_rx.try_recv() {
            rid = Some(r);
        }
        if let (Some(rid), true) = (&rid, started.elapsed() >= FLOOD) {
            let body = serde_json::json!({
                "operationId": "4.op.flood",
                "status": "assigned",
                "registrationState": {
                    "registrationId": regid, "assignedHub": HUB, "deviceId": regid,
                    "status": "assigned", "substatus": "initialAssignment"
                }
            });
            let mut reply = Publish::new(
                format!("$dps/registrations/res/200/?$rid={rid}"),
                QoS::AtLeastOnce,
                body.to_string(),
            );
            reply.pkid = 1;
            let _ = tx.write_all(&bytes_of(Packet::Publish(reply))).await;
            let _ = tx.flush().await;
            break;
        }
        // 64 unsolicited replies (a $rid nobody asked for) per write
        let mut batch = Vec::new();
        for _ in 0..64 {
            pkid = pkid.wrapping_add(1).max(2);
            let mut p = Publish::new(
                "$dps/registrations/res/202/?$rid=999999&retry-after=1",
                QoS::AtLeastOnce,
                r#"{"operationId":"4.op.unsolicited","status":"assigning"}"#,
            );
            p.pkid = pkid;
            batch.extend(bytes_of(Packet::Publish(p)));
        }
        if tx.write_all(&batch).await.is_err() {
            return;
        }
        sent.fetch_add(64, Ordering::Relaxed);
    }
    // keep the connection open until the device closes it
    std::future::pending::<()>().await
}

#[test]
fn a_flood_of_unsolicited_publishes_is_bounded_and_survived() {
    // The flood's log lines are counted, not kept: a growing Vec would look like growth here.
    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    prov_mqtt_transport::log::set_sink(move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    for proto in Proto::BOTH {
        let regid = format!("flood-{}", proto.tag());
        let pki = Pki::generate(&[&regid]);
        let server = flooder(&pki, proto);
        let device = Device::new(
            proto,
            format!("localhost:{}", server.addr.port()),
            &regid,
            x509(&pki, &regid),
        )
        .trusting(&pki.root_ca_pem)
        .trace(false);
        let ll = Ll::create(&device);
        assert_eq!(ll.open(), 0);
        let (rss_before, lines_before) = (rss_mb(), lines.load(Ordering::Relaxed));
        let mut rss_peak = rss_before;
        let (mut doworks, mut at_cap, mut most, mut events) = (0u64, 0u64, 0u64, 0u64);
        let mut longest = Duration::ZERO;
        let started = Instant::now();
        while !ll.done() && started.elapsed() < Duration::from_secs(60) {
            let before = events_delivered();
            let t = Instant::now();
            ll.step(t);
            longest = longest.max(t.elapsed());
            let n = events_delivered() - before;
            doworks += 1;
            events += n;
            most = most.max(n);
            at_cap += u64::from(n == MAX_EVENTS_PER_DOWORK as u64);
            if doworks % 100 == 0 {
                rss_peak = rss_peak.max(rss_mb());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = started.elapsed();
        rss_peak = rss_peak.max(rss_mb());
        let outcome = ll.outcome().clone();
        let sent = server.sent.load(Ordering::Relaxed);
        let logged = lines.load(Ordering::Relaxed) - lines_before;
        println!(
            "FLOOD | {} | server wrote {sent} unsolicited PUBLISHes in {:.1} s; {events} events \
             in {doworks} doworks, at most {most} per dowork (cap {MAX_EVENTS_PER_DOWORK}, reached \
             {at_cap} times), longest dowork {:.2} ms; RSS {rss_before:.1} MB -> peak \
             {rss_peak:.1} MB (+{:.1}); {logged} log lines; outcome {:?} after {:.1} s",
            proto.name(),
            FLOOD.as_secs_f64(),
            longest.as_secs_f64() * 1e3,
            rss_peak - rss_before,
            outcome.result,
            elapsed.as_secs_f64()
        );
        assert_eq!(
            outcome.result,
            Some(PROV_DEVICE_TRANSPORT_RESULT_OK),
            "{outcome:?}"
        );
        assert_eq!(outcome.hub.as_deref(), Some(HUB));
        assert_eq!(outcome.data_callbacks, 1);
        assert!(
            sent > 10_000,
            "the server flooded ({sent} PUBLISHes written)"
        );
        assert!(
            most <= MAX_EVENTS_PER_DOWORK as u64,
            "{most} events in one dowork"
        );
        assert!(
            at_cap > 0,
            "the flood filled some dowork to its cap (else the cap was not tested)"
        );
        assert!(
            rss_peak - rss_before < MAX_GROWTH_MB,
            "RSS grew by {:.1} MB",
            rss_peak - rss_before
        );
        drop(ll);
    }
}
