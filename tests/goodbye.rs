//! Goodbyes reach the server: a process that registers, ends its handle and exits at once (no
//! sleep, `exit` right after `destroy`) still gets its last PUBACK and its DISCONNECT to the
//! server, because `close` and `destroy` wait (at most 200 ms) until they are written.
//!
//! 50 processes over MQTT/TLS and 50 over MQTT/WSS against the emulator, each this test binary
//! run as a child (the ignored test `child`). Half of them end the LL client's way (close inside
//! the data callback, then destroy), half call only destroy. The emulator's timeline must show a
//! DISCONNECT from every one, after the PUBACK of the final reply; destroy's duration is printed.

use std::process::Command;
use std::time::{Duration, Instant};

use dps_emulator::sas::derive_device_key;
use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK;
use testkit::{Auth, Device, Ll, Proto, Then};

const RUNS: usize = 50;
/// Children at a time.
const PARALLEL: usize = 5;
const GROUP_KEY: &str = "Z29vZGJ5ZS1ncm91cC1rZXktZm9yLXRoZS10ZXN0cy0w";

/// How a child ends its handle.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// close inside the data callback, then destroy (the LL client's way)
    CloseInCallback,
    /// destroy only, no close first
    DestroyOnly,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::CloseInCallback => "close-in-callback",
            Ending::DestroyOnly => "destroy-only",
        }
    }
}

/// The child: registers, ends as told, prints destroy's duration and exits at once.
#[test]
#[ignore = "run by the goodbye tests as a child process"]
fn child() {
    let Ok(uri) = std::env::var("GOODBYE_URI") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let proto = match var("GOODBYE_PROTO").as_str() {
        "mqtt" => Proto::Mqtt,
        _ => Proto::Ws,
    };
    let regid = var("GOODBYE_REGID");
    let ending = match var("GOODBYE_ENDING").as_str() {
        "destroy-only" => Ending::DestroyOnly,
        _ => Ending::CloseInCallback,
    };
    let ca = std::fs::read_to_string(var("GOODBYE_CA")).unwrap();
    let mut device = Device::new(
        proto,
        uri,
        &regid,
        Auth::SymmetricKey {
            key_b64: derive_device_key(GROUP_KEY, &regid),
        },
    )
    .trusting(&ca)
    .trace(false);
    device.poll_at_once = true;
    device.on_data = match ending {
        Ending::CloseInCallback => Then::Close,
        Ending::DestroyOnly => Then::Nothing,
    };
    let ll = Ll::create(&device);
    assert_eq!(ll.open(), 0);
    ll.pump(Duration::from_secs(20));
    let result = ll.outcome().result;
    let started = Instant::now();
    ll.destroy();
    let took = started.elapsed();
    println!(
        "GOODBYE result={} destroy_us={}",
        result == Some(PROV_DEVICE_TRANSPORT_RESULT_OK),
        took.as_micros()
    );
    // exit now: no destructor, no sleep, the I/O thread dies with the process
    std::process::exit(0);
}

struct Run {
    regid: String,
    ending: Ending,
    assigned: bool,
    destroy: Duration,
}

fn spawn_child(emu: &Emulator, proto: Proto, ca: &str, regid: &str, ending: Ending) -> Run {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--ignored", "--nocapture"])
        .env("GOODBYE_URI", format!("localhost:{}", proto.port(emu)))
        .env("GOODBYE_PROTO", proto.tag())
        .env("GOODBYE_REGID", regid)
        .env("GOODBYE_ENDING", ending.name())
        .env("GOODBYE_CA", ca)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("GOODBYE "))
        .unwrap_or_else(|| {
            panic!(
                "{regid}: the child printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    Run {
        regid: regid.to_owned(),
        ending,
        assigned: field("result=") == "true",
        destroy: Duration::from_micros(field("destroy_us=").parse().unwrap()),
    }
}

/// The inbound packets of `regid`'s connection, once the emulator has seen it close.
fn packets_in(emu: &Emulator, regid: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mine: Vec<_> = emu
            .timeline()
            .into_iter()
            .filter(|e| e.regid.as_deref() == Some(regid))
            .collect();
        if mine.iter().any(|e| e.packet == "CLOSE") || Instant::now() > deadline {
            return mine
                .into_iter()
                .map(|e| format!("{} {}", e.dir, e.packet))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median_max(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(d[d.len() / 2]), ms(*d.last().unwrap()))
}

fn goodbyes(proto: Proto) {
    let emu = testkit::quiet_emulator(&[], |cfg| cfg.with_group_key(GROUP_KEY));
    let dir = std::env::temp_dir().join(format!("goodbye-{}-{}", proto.tag(), std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("root-ca.pem");
    std::fs::write(&ca, &emu.pki().root_ca_pem).unwrap();
    let ca = ca.display().to_string();
    let mut runs = Vec::new();
    for batch in (0..RUNS).collect::<Vec<_>>().chunks(PARALLEL) {
        std::thread::scope(|s| {
            let children: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let regid = format!("bye-{}-{i}", proto.tag());
                    let ending = match i % 2 {
                        0 => Ending::CloseInCallback,
                        _ => Ending::DestroyOnly,
                    };
                    let (emu, ca) = (&emu, &ca);
                    s.spawn(move || spawn_child(emu, proto, ca, &regid, ending))
                })
                .collect();
            runs.extend(children.into_iter().map(|h| h.join().unwrap()));
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut goodbyes = 0;
    let mut missing = Vec::new();
    for run in &runs {
        assert!(run.assigned, "{}: not assigned", run.regid);
        let packets = packets_in(&emu, &run.regid);
        let last = |what: &str| packets.iter().rposition(|p| p == what);
        let (reply, puback, disconnect) = (
            last("out PUBLISH"),
            last("in PUBACK"),
            last("in DISCONNECT"),
        );
        match (reply, puback, disconnect) {
            (Some(r), Some(a), Some(d)) if r < a && a < d => goodbyes += 1,
            _ => missing.push(format!("{} ({:?}): {packets:?}", run.regid, run.ending)),
        }
    }
    for ending in [Ending::CloseInCallback, Ending::DestroyOnly] {
        let (median, max) = median_max(
            runs.iter()
                .filter(|r| r.ending == ending)
                .map(|r| r.destroy)
                .collect(),
        );
        println!(
            "GOODBYE | {} | {} | destroy took median {median:.3} ms, max {max:.3} ms",
            proto.name(),
            ending.name()
        );
    }
    println!(
        "GOODBYE | {} | {goodbyes} of {RUNS} processes that exit right after destroy: the final \
         PUBACK then DISCONNECT reached the emulator",
        proto.name()
    );
    assert!(missing.is_empty(), "goodbyes lost:\n{}", missing.join("\n"));
    assert_eq!(goodbyes, RUNS);
}

testkit::both!(goodbyes);

/// A server that accepts TCP and never answers the TLS handshake: there is nobody to say
/// goodbye to yet, so destroy does not wait.
fn destroy_in_the_tls_handshake_does_not_wait(proto: Proto) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || listener.accept().map(|(tcp, _)| tcp));
    let regid = format!("bye-handshake-{}", proto.tag());
    let device = Device::new(
        proto,
        format!("localhost:{port}"),
        &regid,
        Auth::SymmetricKey {
            key_b64: derive_device_key(GROUP_KEY, &regid),
        },
    )
    .trace(false);
    let ll = Ll::create(&device);
    assert_eq!(ll.open(), 0);
    ll.dowork_for(Duration::from_millis(300));
    let _held = holder.join().unwrap().expect("the device connected");
    let started = Instant::now();
    ll.destroy();
    let took = started.elapsed();
    println!(
        "GOODBYE | {} | destroy during the TLS handshake took {:.3} ms",
        proto.name(),
        took.as_secs_f64() * 1e3
    );
    // no wait at all: well under the 200 ms a goodbye may take, even on a loaded machine
    assert!(took < Duration::from_millis(150), "{took:?}");
}

testkit::both!(destroy_in_the_tls_handshake_does_not_wait);
