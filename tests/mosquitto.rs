//! MQTT-layer interop with a real broker: Debian's mosquitto 2.0, with a TLS listener (8883)
//! that requires client certificates and WebSocket listeners. The library is driven through its
//! public C ABI like the other end-to-end tests; mosquitto does not speak DPS, so:
//!
//! - idle: a registration nobody answers stays connected for ~10 s with keep-alive 2 s over TLS
//!   and over WSS at the same time; PINGREQ/PINGRESP flow (our trace and mosquitto's
//!   `log_type all` both show them) and nothing reconnects;
//! - round trip: a small DPS responder (an MQTT client on mosquitto's plain loopback listener)
//!   answers the register and poll requests mosquitto forwards, so whole registrations run
//!   through the broker over TLS and over WSS: CONNECT, SUBSCRIBE, PUBLISH both ways, PUBACK;
//! - refusals: a device without a client certificate is refused by mosquitto in the TLS
//!   handshake, with an error line that says so.
//!
//! WebSocket subprotocol: the library offers `mqtt`, as MQTT 3.1.1 §6 names it, which is the
//! only spelling mosquitto's libwebsockets accepts (it matches case-sensitively and refuses the
//! C SDK's `MQTT` with `No supported protocol "MQTT"`), so every WSS check runs on mosquitto's
//! own WSS listener, client certificate required: the upgrade, framing, masking, MQTT in binary
//! messages and pings are all mosquitto's.
//!
//! mosquitto's WebSocket listeners bind every interface, so the broker and the library's
//! connections run inside a network namespace this test creates (`ip netns add`) with only a
//! loopback interface: the test thread joins it with setns(2) before the library's I/O thread
//! exists, so that thread, mosquitto and every helper started from here live in it too. It needs
//! root, mosquitto and iproute2; without them it says SKIPPED loudly and passes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dps_emulator::pki::Pki;
use prov_mqtt_transport::ffi::*;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe, SubscribeFilter};
use rumqttc::mqttbytes::QoS;
use testkit::tools::skip;
use testkit::*;

/// Registration ids (MQTT client ids): one per transport, so mosquitto keeps both sessions.
const TLS_DEVICE: &str = "mosq-tls";
const WSS_DEVICE: &str = "mosq-wss";
const IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE: u32 = 2;
/// mosquitto's listeners.
const PLAIN_PORT: u16 = 1883;
const TLS_PORT: u16 = 8883;
const WSS_PORT: u16 = 443;

/// A named network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("prov-mosq-{}", std::process::id());
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        };
        run(&["netns", "add", &name])?;
        let ns = Netns(name);
        run(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread into the namespace; threads and processes it starts follow.
    fn enter(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
        // SAFETY: a valid namespace fd; CLONE_NEWNET changes only the calling thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Mosquitto {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Mosquitto {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        match std::env::var_os("KEEP_MOSQUITTO_LOG") {
            None => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Some(_) => eprintln!("mosquitto's files kept in {}", self.dir.display()),
        }
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// mosquitto: plain MQTT on 1883 (the responder), MQTT/TLS on 8883 and MQTT/WSS on 443 with
/// client certificates required (the PKI's root CA trusted, its localhost server certificate).
fn mosquitto(pki: &Pki) -> Mosquitto {
    let dir = std::env::temp_dir().join(format!("prov-mosquitto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    pki.write_to(&dir).unwrap();
    let p = |name: &str| dir.join(name).display().to_string();
    let tls = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        p("root-ca.pem"),
        p("server-chain.pem"),
        p("server-key.pem")
    );
    let log = dir.join("mosquitto.log");
    let conf = format!(
        "user root\nper_listener_settings false\nallow_anonymous true\n\
         log_dest file {}\nlog_type all\nwebsockets_log_level 255\nconnection_messages true\n\
         listener {PLAIN_PORT} 127.0.0.1\n\
         listener {TLS_PORT} 127.0.0.1\n{tls}\
         listener {WSS_PORT}\nprotocol websockets\n{tls}",
        log.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let m = Mosquitto { child, log, dir };
    for port in [PLAIN_PORT, TLS_PORT, WSS_PORT] {
        wait_for_port(port);
    }
    m
}

fn device(
    ws_port: Option<u16>,
    regid: &str,
    auth: Auth,
    root_ca: &str,
    options: &[(&'static str, u32)],
) -> Device {
    let proto = match ws_port {
        None => Proto::Mqtt,
        Some(_) => Proto::Ws,
    };
    Device::new(
        proto,
        // The real service's form for MQTT (a host name, default port 8883).
        match ws_port {
            None => "localhost".to_string(),
            Some(port) => format!("localhost:{port}"),
        },
        regid,
        auth,
    )
    .trusting(root_ca)
    .options(options)
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

fn count_in(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

// ---- a DPS responder behind the broker ---------------------------------------------------

fn send(tcp: &mut TcpStream, packet: Packet) {
    let mut out = BytesMut::new();
    packet.write(&mut out, 1 << 20).unwrap();
    tcp.write_all(&out).unwrap();
}

/// Connects to mosquitto's plain listener, subscribes to the DPS request topics and answers:
/// register → 202 assigning (retry-after 1), poll → 200 assigned (QoS 1) to `mosquitto-hub`, with the
/// device id taken from the register body. Returns how many requests it answered.
fn dps_responder(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u16> {
    std::thread::spawn(move || {
        let mut tcp = TcpStream::connect(("127.0.0.1", PLAIN_PORT)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        send(&mut tcp, Packet::Connect(Connect::new("dps-responder")));
        let mut sub = Subscribe::new_many([
            SubscribeFilter::new("$dps/registrations/PUT/#".into(), QoS::AtMostOnce),
            SubscribeFilter::new("$dps/registrations/GET/#".into(), QoS::AtMostOnce),
        ]);
        sub.pkid = 1;
        send(&mut tcp, Packet::Subscribe(sub));
        let mut inbound = BytesMut::new();
        let mut answered = 0;
        let mut device = String::new();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => inbound.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
            while let Ok(packet) = Packet::read(&mut inbound, 1 << 20) {
                let Packet::Publish(request) = packet else {
                    continue;
                };
                let rid = request
                    .topic
                    .split(['?', '&'])
                    .find_map(|p| p.strip_prefix("$rid="))
                    .unwrap_or("0")
                    .to_owned();
                let (topic, body) = if request.topic.contains("iotdps-register") {
                    let body: serde_json::Value = serde_json::from_slice(&request.payload).unwrap();
                    device = body["registrationId"].as_str().unwrap().to_owned();
                    (
                        format!("$dps/registrations/res/202/?$rid={rid}&retry-after=1"),
                        serde_json::json!({"operationId": "op-mosquitto", "status": "assigning"}),
                    )
                } else {
                    (
                        format!("$dps/registrations/res/200/?$rid={rid}"),
                        serde_json::json!({
                            "operationId": "op-mosquitto",
                            "status": "assigned",
                            "registrationState": {
                                "registrationId": device,
                                "assignedHub": "mosquitto-hub",
                                "deviceId": device,
                                "status": "assigned"
                            }
                        }),
                    )
                };
                // QoS 1, as DPS replies: mosquitto delivers them with QoS 1 and the device acks.
                let mut reply = Publish::new(topic, QoS::AtLeastOnce, body.to_string());
                answered += 1;
                reply.pkid = answered;
                send(&mut tcp, Packet::Publish(reply));
            }
        }
        answered
    })
}

// ---- the test ----------------------------------------------------------------------------

#[test]
fn mosquitto_interop_tls_client_certs_wss_and_keepalive() {
    if !require_root("ip netns add") {
        return;
    }
    for program in ["mosquitto", "ip"] {
        if !require_tool(program) {
            return;
        }
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            skip(&format!("cannot create a network namespace: {e}"));
            return;
        }
    };
    ns.enter();
    capture_logs();
    let started = Instant::now();
    let pki = Pki::generate(&[TLS_DEVICE, WSS_DEVICE]);
    let broker = mosquitto(&pki);

    // 1. Idle over TLS and WSS at once: keep-alive 2 s, nobody answers the register request.
    let idle_options = [
        ("keepalive", KEEPALIVE), // read as `const int*`: the same bits for small values
        ("reply_timeout_secs", 60),
    ];
    let runs: Vec<_> = [(None, TLS_DEVICE), (Some(WSS_PORT), WSS_DEVICE)]
        .into_iter()
        .map(|(ws, regid)| {
            let dev = device(
                ws,
                regid,
                x509(&pki, regid),
                &pki.root_ca_pem,
                &idle_options,
            );
            std::thread::spawn(move || register(&dev, IDLE))
        })
        .collect();
    let idle: Vec<Outcome> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let log = broker.log();
    for (o, regid) in idle.iter().zip([TLS_DEVICE, WSS_DEVICE]) {
        let ours = logs_for(regid);
        assert_eq!(o.result, None, "{regid}: nobody answers DPS here: {o:?}");
        assert_eq!(
            o.statuses.first().map(|s| s.0),
            Some(PROV_DEVICE_TRANSPORT_STATUS::PROV_DEVICE_TRANSPORT_STATUS_CONNECTED),
            "{regid}: CONNACK accepted by mosquitto: {o:?}\n{ours:#?}"
        );
        assert_eq!(o.statuses.len(), 1, "{regid}: no other status: {o:?}");
        // ~10 s idle / 2 s keep-alive: about 4 pings.
        let pings = count(&ours, "-> PINGREQ");
        let pongs = count(&ours, "<- PINGRESP");
        assert!(pings >= 3, "{regid}: PINGREQs sent: {pings}\n{ours:#?}");
        assert!(pongs + 1 >= pings, "{regid}: {pongs} PINGRESPs for {pings}");
        assert_eq!(count(&ours, "reconnecting"), 0, "{regid}: {ours:#?}");
        let broker_pings = count_in(&log, &format!("Received PINGREQ from {regid}"));
        let broker_pongs = count_in(&log, &format!("Sending PINGRESP to {regid}"));
        assert!(broker_pings >= 3 && broker_pongs >= 3, "{regid}: {log}");
        assert_eq!(
            count_in(&log, &format!("as {regid} (p2, c1, k{KEEPALIVE}")),
            1,
            "{regid}: one connection, MQTT 3.1.1, clean session, keep-alive {KEEPALIVE}: {log}"
        );
        assert_eq!(
            count_in(&log, &format!("Received SUBSCRIBE from {regid}")),
            1,
            "{log}"
        );
        assert_eq!(
            count_in(&log, &format!("Received PUBLISH from {regid}")),
            1,
            "one register request: {log}"
        );
        println!(
            "MOSQUITTO | {regid} | idle {:.0} s, keep-alive {KEEPALIVE} s | we sent {pings} PINGREQ, got {pongs} PINGRESP | mosquitto logged {broker_pings} PINGREQ / {broker_pongs} PINGRESP, no reconnect",
            IDLE.as_secs_f64()
        );
    }
    assert_eq!(
        count_in(&log, "$dps/registrations/res/# (QoS 1)"),
        2,
        "subscribed on both: {log}"
    );

    // 2. Whole registrations through the broker, TLS then WSS, answered by the responder.
    let stop = Arc::new(AtomicBool::new(false));
    let responder = dps_responder(stop.clone());
    std::thread::sleep(Duration::from_millis(300)); // its SUBSCRIBE is in
    for (ws, regid) in [(None, TLS_DEVICE), (Some(WSS_PORT), WSS_DEVICE)] {
        let o = register(
            &device(ws, regid, x509(&pki, regid), &pki.root_ca_pem, &[]),
            Duration::from_secs(20),
        );
        assert_eq!(
            o.result,
            Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK),
            "{regid}: {o:?}\n{}",
            broker.log()
        );
        assert_eq!(o.hub.as_deref(), Some("mosquitto-hub"));
        assert_eq!(o.device_id.as_deref(), Some(regid));
        println!(
            "MOSQUITTO | {regid} | registration through mosquitto: assigned in {:.2} s",
            o.elapsed.as_secs_f64()
        );
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        responder.join().unwrap(),
        4,
        "2 registers and 2 polls answered"
    );
    let log = broker.log();
    assert!(
        count_in(&log, "Received PUBACK from mosq-") >= 4,
        "our PUBACKs for mosquitto's QoS 1 deliveries: {log}"
    );

    // 3. Both WSS connections were mosquitto's own WSS listener's: it verified our client
    //    certificate and accepted the upgrade with the subprotocol we offer.
    assert!(
        log.contains(&format!("client cert CN '{WSS_DEVICE}'")),
        "mosquitto's WSS listener verified our client certificate: {log}"
    );
    assert!(!log.contains("No supported protocol"), "{log}");
    assert_eq!(
        count_in(&log, &format!("as {WSS_DEVICE} (p2, c1, k")),
        2,
        "the idle and the whole registration over WSS: {log}"
    );
    // Every close said goodbye: the idle run's and the registration's DISCONNECT, per device.
    for regid in [TLS_DEVICE, WSS_DEVICE] {
        assert_eq!(
            count_in(&log, &format!("Received DISCONNECT from {regid}")),
            2,
            "{log}"
        );
    }
    println!("MOSQUITTO | mosquitto's WSS listener ({WSS_PORT}) | upgrade with subprotocol mqtt accepted, client certificate verified");

    // 4. No client certificate: mosquitto refuses in the TLS handshake.
    let regid = "mosq-no-cert";
    let o = register(
        &device(
            None,
            regid,
            Auth::SymmetricKey {
                key_b64: "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5".into(),
            },
            &pki.root_ca_pem,
            &[],
        ),
        Duration::from_secs(20),
    );
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{o:?}"
    );
    let errors: Vec<_> = logs_for(regid)
        .into_iter()
        .filter(|l| l.contains("error ["))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("TLS handshake failed")
            && errors[0].contains("requires a client certificate and none was sent"),
        "{}",
        errors[0]
    );
    println!("MOSQUITTO | {regid} | {}", errors[0]);
    println!(
        "MOSQUITTO | total {:.1} s; mosquitto log: {} lines",
        started.elapsed().as_secs_f64(),
        broker.log().lines().count()
    );
    drop(broker);
    drop(ns);
}
