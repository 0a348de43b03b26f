//! The fault matrix, end to end: the C ABI driven like the SDK's LL client against the DPS
//! emulator, for MQTT/TLS and MQTT/WSS. Every fault the emulator can inject (drops at each stage,
//! slow and silent servers, 5xx and 429 storms, CONNACK and SUBACK refusals) and what
//! docs/spec/behaviour.md part 2 promises: transient faults are survived by reconnecting (backoff with
//! jitter, re-subscribe, re-send the outstanding request) within the budget set through
//! `set_option`; a spent budget takes the error path exactly once; refusals are never retried;
//! nothing is called back after `close` or `destroy`.
//!
//! Each test asserts the outcome and the number of connections the emulator accepted, and
//! prints one `FAULT-TABLE |` row (fault, transport, outcome, time to outcome, connections):
//! `cargo test --test all faults:: -- --nocapture | grep FAULT-TABLE` gives docs/FAULTS.md's table.
//! Most tests are a [`Case`] given to [`run`], which makes those checks, followed by the
//! test's own.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use dps_emulator::scenario::{DropAfter, ErrorReply, Scenario, Stage};
use dps_emulator::{Config, Emulator, TimelineEntry};
use prov_mqtt_transport::ffi::*;
use testkit::*;
use PROV_DEVICE_TRANSPORT_ERROR::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// An emulator with one X.509 device whose scenario is `scenario`.
fn emulator(regid: &str, scenario: Scenario) -> Emulator {
    quiet_emulator(&[regid], |cfg| cfg.with_scenario(regid, scenario))
}

/// The device, with small retry settings so that faults resolve in seconds.
fn device(emu: &Emulator, proto: Proto, regid: &str, options: &[(&'static str, u32)]) -> Device {
    Device::x509_on(emu, proto, regid)
        .options(&[("retry_initial_ms", 50), ("reply_timeout_secs", 5)])
        .options(options)
}

fn regid(fault: &str, proto: Proto) -> String {
    format!("{fault}-{}", proto.name()).to_lowercase()
}

/// The emulator's listener for `proto`.
fn addr(emu: &Emulator, proto: Proto) -> std::net::SocketAddr {
    match proto {
        Proto::Mqtt => emu.mqtt_addr(),
        Proto::Ws => emu.ws_addr(),
    }
}

/// The connection is closed when `stage` is reached: the first time, or `always`.
fn drop_after(stage: Stage, always: bool) -> Scenario {
    Scenario {
        drop_after: Some(DropAfter { stage, always }),
        ..Scenario::default()
    }
}

/// `status` (errorCode `status` × 1000) to `on` requests: the first `times`, or every one.
fn error_reply(status: u16, message: &str, on: Stage, times: Option<u32>) -> Scenario {
    Scenario {
        error: Some(ErrorReply {
            status,
            error_code: u32::from(status) * 1000,
            message: message.into(),
            on,
            times,
        }),
        ..Scenario::default()
    }
}

/// One row of the fault table, printed for docs/FAULTS.md.
fn row(fault: &str, proto: Proto, outcome: &str, elapsed: Duration, connections: u64) {
    println!(
        "FAULT-TABLE | {fault} | {} | {outcome} | {:.2} s | {connections} |",
        proto.name(),
        elapsed.as_secs_f64(),
    );
}

fn count(o: &Outcome, status: PROV_DEVICE_TRANSPORT_STATUS) -> usize {
    o.statuses.iter().filter(|(s, _)| *s == status).count()
}

fn assert_assigned(o: &Outcome, regid: &str) {
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT_OK),
        "{regid}: {o:?}"
    );
    assert_eq!(o.device_id.as_deref(), Some(regid));
    assert_eq!(o.data_callbacks, 1, "exactly one data callback: {o:?}");
    assert_eq!(
        count(o, PROV_DEVICE_TRANSPORT_STATUS_CONNECTED),
        1,
        "CONNECTED is reported once, not again after a reconnect: {o:?}"
    );
    assert!(o.errors.is_empty(), "{o:?}");
}

fn assert_error_once(o: &Outcome, regid: &str) {
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{regid}: {o:?}"
    );
    assert_eq!(
        o.data_callbacks, 1,
        "the error path runs exactly once: {o:?}"
    );
    assert_eq!((o.hub.as_deref(), o.device_id.as_deref()), (None, None));
}

/// Device PUBLISHes the emulator received, as (connection, topic), in order.
fn requests(emu: &Emulator, kind: &str) -> Vec<(u64, String)> {
    emu.timeline()
        .into_iter()
        .filter(|e: &TimelineEntry| e.dir == "in" && e.packet == "PUBLISH")
        .filter_map(|e| e.topic.map(|t| (e.conn, t)))
        .filter(|(_, t)| t.contains(kind))
        .collect()
}

/// The connections the device's requests of `kind` came on, in order.
fn request_conns(emu: &Emulator, kind: &str) -> Vec<u64> {
    requests(emu, kind).iter().map(|r| r.0).collect()
}

/// Packets of one type the device sent, per connection.
fn sent_per_conn(emu: &Emulator, packet: &str) -> Vec<u64> {
    let mut conns: Vec<u64> = emu
        .timeline()
        .into_iter()
        .filter(|e| e.dir == "in" && e.packet == packet)
        .map(|e| e.conn)
        .collect();
    conns.sort_unstable();
    conns
}

const REGISTER: &str = "iotdps-register";
const POLL: &str = "iotdps-get-operationstatus";

fn has_log(regid: &str, needle: &str) -> bool {
    logs_for(regid).iter().any(|l| l.contains(needle))
}

/// How many of the device's log lines contain `needle`.
fn log_count(regid: &str, needle: &str) -> usize {
    logs_for(regid)
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

// ---- the table: a case, its run and the checks every case makes -------------------------

/// How a case ends.
enum Expect<'a> {
    /// [`assert_assigned`] (no error callback either)
    Assigned,
    /// [`assert_error_once`], with exactly these error callbacks
    ErrorOnce(&'a [PROV_DEVICE_TRANSPORT_ERROR]),
}

/// One case of the fault matrix: the fault, the device, and what must come of it.
struct Case<'a> {
    /// the registration id, before `-{transport}`
    name: &'a str,
    scenario: Scenario,
    /// on top of [`device`]'s
    options: &'a [(&'static str, u32)],
    /// Connect through a [`relay`] to the emulator; its n-th path becomes a black hole this
    /// long after it opened (`None`: never).
    relay: Option<&'a [Option<Duration>]>,
    /// the driver's limit
    timeout: Duration,
    expect: Expect<'a>,
    /// how many connections the emulator accepts, and why that many
    connections: RangeInclusive<u64>,
    why: &'a str,
    /// what the device's log must say (a line containing each)
    logs: &'a [&'a str],
    /// the FAULT-TABLE row's fault and outcome
    fault: &'a str,
    outcome: &'a str,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            name: "",
            scenario: Scenario::default(),
            options: &[],
            relay: None,
            timeout: TIMEOUT,
            expect: Expect::Assigned,
            connections: 1..=1,
            why: "",
            logs: &[],
            fault: "",
            outcome: "",
        }
    }
}

/// A case that ran and passed the checks every case makes, for the test's own.
struct Ran {
    o: Outcome,
    emu: Emulator,
    regid: String,
    proto: Proto,
    fault: String,
    outcome: String,
}

impl Ran {
    /// The FAULT-TABLE row: the test's last step, once its own checks have passed.
    fn row(&self) {
        row(
            &self.fault,
            self.proto,
            &self.outcome,
            self.o.elapsed,
            self.emu.connections_accepted(),
        );
    }
}

/// Registers `case`'s device on `proto` and checks the outcome, the connections and the log.
fn run(proto: Proto, case: Case) -> Ran {
    let regid = regid(case.name, proto);
    let emu = emulator(&regid, case.scenario);
    let mut dev = device(&emu, proto, &regid, case.options);
    if let Some(black_holes) = case.relay {
        let to = addr(&emu, proto);
        let port = relay(black_holes.iter().map(|&after| (to, after)).collect());
        dev.uri = format!("localhost:{port}");
    }
    let o = register(&dev, case.timeout);
    match case.expect {
        Expect::Assigned => assert_assigned(&o, &regid),
        Expect::ErrorOnce(errors) => {
            assert_error_once(&o, &regid);
            assert_eq!(o.errors, errors, "{regid}: the error callbacks: {o:?}");
        }
    }
    let n = emu.connections_accepted();
    assert!(
        case.connections.contains(&n),
        "{regid}: {n} connections, not {:?} ({}): {o:?}",
        case.connections,
        case.why
    );
    for needle in case.logs {
        assert!(
            has_log(&regid, needle),
            "{regid}: no {needle:?} in {:#?}",
            logs_for(&regid)
        );
    }
    Ran {
        o,
        emu,
        regid,
        proto,
        fault: case.fault.into(),
        outcome: case.outcome.into(),
    }
}

// ---- connection dropped, once: survived -------------------------------------------------

fn dropped_once(proto: Proto, stage: Stage) {
    let r = run(
        proto,
        Case {
            name: &format!("drop-{}", stage.name()),
            scenario: drop_after(stage, false),
            expect: Expect::Assigned,
            connections: 2..=2,
            why: "one reconnect",
            logs: &["reconnecting in"],
            fault: &format!(
                "connection dropped after {} (once)",
                stage.name().to_uppercase()
            ),
            outcome: "assigned after 1 reconnect",
            ..Case::default()
        },
    );
    // Re-subscribed on the new connection (a drop at CONNECT may close before SUBSCRIBE is read).
    let subscribes = sent_per_conn(&r.emu, "SUBSCRIBE");
    match stage {
        Stage::Connect => assert!(subscribes.ends_with(&[2]), "{subscribes:?}"),
        _ => assert_eq!(subscribes, vec![1, 2]),
    }
    let registers = requests(&r.emu, REGISTER);
    let register_conns = request_conns(&r.emu, REGISTER);
    let polls = requests(&r.emu, POLL);
    match stage {
        Stage::Connect | Stage::Subscribe => {
            // The register request waited for the new connection's SUBACK.
            assert_eq!(register_conns, vec![2], "{registers:?}");
        }
        Stage::Register => {
            // Re-sent on the new connection, with a new $rid.
            assert_eq!(register_conns, vec![1, 2], "{registers:?}");
            assert_ne!(registers[0].1, registers[1].1, "a new $rid");
            assert!(polls.iter().all(|p| p.0 == 2), "{polls:?}");
        }
        Stage::Poll => {
            // The operation survived: the poll (not a new register) is re-sent.
            assert_eq!(register_conns, vec![1], "{registers:?}");
            // (The dropped poll was not answered, so the emulator still owes one 202.)
            let conns: Vec<_> = polls.iter().map(|r| r.0).collect();
            assert!(conns.starts_with(&[1, 2]), "{polls:?}");
            assert!(conns[1..].iter().all(|&c| c == 2), "{polls:?}");
        }
    }
    r.row();
}

both!(drop_after_connect_is_survived => |p| dropped_once(p, Stage::Connect));

both!(drop_after_subscribe_is_survived => |p| dropped_once(p, Stage::Subscribe));

both!(drop_after_register_is_survived => |p| dropped_once(p, Stage::Register));

both!(drop_after_poll_is_survived => |p| dropped_once(p, Stage::Poll));

// ---- connection dropped every time: the attempts budget -----------------------------------

fn dropped_always(proto: Proto, stage: Stage) {
    let r = run(
        proto,
        Case {
            name: &format!("drop-always-{}", stage.name()),
            scenario: drop_after(stage, true),
            options: &[("retry_max_attempts", 3)],
            // no error callback: not an authorization failure
            expect: Expect::ErrorOnce(&[]),
            connections: 4..=4,
            why: "the first connection and 3 reconnects",
            fault: &format!(
                "connection dropped after {} (every time), retry_max_attempts=3",
                stage.name().to_uppercase()
            ),
            outcome: "error path once (budget spent)",
            ..Case::default()
        },
    );
    assert_eq!(
        request_conns(&r.emu, if stage == Stage::Poll { POLL } else { REGISTER }),
        vec![1, 2, 3, 4],
        "the outstanding request is re-sent on every connection"
    );
    assert_eq!(
        log_count(&r.regid, "giving up after 3 retries"),
        1,
        "{:#?}",
        logs_for(&r.regid)
    );
    r.row();
}

both!(drop_always_after_register_spends_the_attempts_budget => |p| dropped_always(p, Stage::Register));

both!(drop_always_after_poll_spends_the_attempts_budget => |p| dropped_always(p, Stage::Poll));

/// The time budget: many attempts allowed, but only 2 s from the first fault.
fn time_budget(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "drop-always-time",
            scenario: drop_after(Stage::Connect, true),
            options: &[
                ("retry_max_attempts", 100),
                ("retry_max_secs", 2),
                ("retry_initial_ms", 200),
            ],
            expect: Expect::ErrorOnce(&[]),
            connections: 3..=8,
            // 200 ms doubling (jitter: half to full): the budget ends after 2 s, long before 100
            // tries, and the backoff is exponential: at most 2 s / 100 ms + 1 connections.
            why: "exponential backoff, cut by the time budget",
            logs: &["giving up after"],
            fault: "connection dropped after CONNECT (every time), retry_max_secs=2",
            outcome: "error path once (time budget spent)",
            ..Case::default()
        },
    );
    let o = &r.o;
    assert!(o.statuses.is_empty(), "never connected: {o:?}");
    // The last backoff is cut to the end of the budget: the error path comes within one
    // connection attempt of the 2 s, not a whole backoff later.
    assert!(
        o.elapsed >= Duration::from_secs(2) && o.elapsed < Duration::from_millis(3500),
        "{:?}",
        o.elapsed
    );
    r.row();
}

both!(time_budget_ends_the_retries => time_budget);

/// Backoff is exponential with jitter: the gaps between connection attempts grow.
#[test]
fn reconnect_backoff_grows_exponentially() {
    let mut r = run(
        Proto::Mqtt,
        Case {
            name: "backoff-growth",
            scenario: drop_after(Stage::Connect, true),
            options: &[("retry_max_attempts", 4), ("retry_initial_ms", 200)],
            expect: Expect::ErrorOnce(&[]),
            connections: 5..=5,
            why: "the first connection and 4 reconnects",
            fault: "backoff between attempts (retry_initial_ms=200)",
            outcome: "(the delays measured, below)",
            ..Case::default()
        },
    );
    // Delays: 100-200, 200-400, 400-800, 800-1600 ms; total at least 1.5 s.
    assert!(
        r.o.elapsed >= Duration::from_millis(1500),
        "{:?}",
        r.o.elapsed
    );
    let delays: Vec<f64> = logs_for(&r.regid)
        .iter()
        .filter_map(|l| {
            let rest = l.split("reconnecting in ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    assert_eq!(delays.len(), 4, "{:#?}", logs_for(&r.regid));
    for (i, d) in delays.iter().enumerate() {
        let full = 0.2 * f64::from(1u32 << i);
        assert!(
            *d >= full / 2.0 - 0.01 && *d <= full + 0.01,
            "attempt {}: {d} s not in [{}, {full}]",
            i + 1,
            full / 2.0
        );
    }
    r.outcome = format!("delays {delays:?} s");
    r.row();
}

// ---- slow and silent servers ------------------------------------------------------------

fn delayed(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "delayed-suback",
            scenario: Scenario {
                delay_ms: 400,
                ..Scenario::default()
            },
            expect: Expect::Assigned,
            connections: 1..=1,
            why: "a slow server is not a fault",
            fault: "every server packet delayed 400 ms (SUBACK at ~0.8 s)",
            outcome: "assigned, no reconnect",
            ..Case::default()
        },
    );
    // CONNACK at 0.4 s, SUBACK at 0.8 s; the register request waits for SUBACK.
    let tl = r.emu.timeline();
    let at = |dir: &str, what: &str| {
        tl.iter()
            .find(|e| {
                e.dir == dir
                    && (e.packet == what || e.topic.as_deref().is_some_and(|t| t.contains(what)))
            })
            .map(|e| e.t_ms)
            .unwrap_or_else(|| panic!("no {what} in {tl:#?}"))
    };
    let suback = at("out", "SUBACK");
    let register_at = at("in", REGISTER);
    assert!(suback >= 750.0, "SUBACK delayed: {suback} ms");
    assert!(register_at >= suback, "register after SUBACK");
    r.row();
}

both!(delayed_suback_is_waited_for => delayed);

/// Slower than the reply timeout: CONNACK never arrives in time, every attempt times out.
fn slower_than_timeout(proto: Proto) {
    run(
        proto,
        Case {
            name: "delay-over-timeout",
            scenario: Scenario {
                delay_ms: 1500,
                ..Scenario::default()
            },
            options: &[("reply_timeout_secs", 1), ("retry_max_attempts", 2)],
            expect: Expect::ErrorOnce(&[]),
            connections: 3..=3,
            why: "the first connection and 2 reconnects",
            logs: &["no CONNACK within 1.0 s"],
            fault: "server packets delayed 1.5 s, reply_timeout_secs=1, retry_max_attempts=2",
            outcome: "error path once (CONNACK timeouts, budget spent)",
            ..Case::default()
        },
    )
    .row();
}

both!(server_slower_than_the_reply_timeout => slower_than_timeout);

fn silent(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "silent",
            scenario: Scenario {
                never_reply: true,
                ..Scenario::default()
            },
            options: &[("reply_timeout_secs", 1), ("retry_max_attempts", 2)],
            expect: Expect::ErrorOnce(&[]),
            connections: 3..=3,
            why: "the first connection and 2 reconnects",
            fault: "server silent (never replies), reply_timeout_secs=1, retry_max_attempts=2",
            outcome: "error path once (3 reply timeouts)",
            ..Case::default()
        },
    );
    // The register request is re-sent after each reply timeout, on a new connection.
    assert_eq!(request_conns(&r.emu, REGISTER), vec![1, 2, 3]);
    assert_eq!(
        log_count(&r.regid, "no reply to the register request within 1.0 s"),
        3,
        "{:#?}",
        logs_for(&r.regid)
    );
    assert!(
        r.o.elapsed >= Duration::from_secs(3) && r.o.elapsed < Duration::from_secs(15),
        "{:?}",
        r.o.elapsed
    );
    r.row();
}

both!(silent_server_times_out_and_spends_the_budget => silent);

/// A relay on loopback: the n-th connection goes to `backends[n]` (the last one for the rest).
/// TLS passes through untouched, so the device talks to each emulator end to end. A backend
/// with `Some(after)` becomes a black hole that long after the connection: bytes are read and
/// dropped both ways and no close is passed on, like a dead network path.
fn relay(backends: Vec<(std::net::SocketAddr, Option<Duration>)>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let (addr, black_hole) = backends[n.min(backends.len() - 1)];
            let Ok(server) = std::net::TcpStream::connect(addr) else {
                return;
            };
            let until = black_hole.map(|d| Instant::now() + d);
            let open = move || until.map_or(true, |t| Instant::now() < t);
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if open() && to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    if open() {
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    } else {
                        // A dead path passes on no close: keep the other side open a while.
                        std::thread::sleep(Duration::from_secs(30));
                    }
                });
            }
        }
    });
    port
}

/// Silent once: the first connection reaches an emulator that never answers; after the reply
/// timeout the device reconnects (to one that answers), re-sends the register request and
/// completes.
fn silent_once(proto: Proto) {
    let regid = regid("silent-once", proto);
    let pki = Pki::generate(&[&regid]);
    let start = |scenario: Scenario| {
        let mut cfg = Config::ephemeral()
            .with_pki(pki.clone())
            .with_scenario(&regid, scenario);
        cfg.log_to_stderr = false;
        Emulator::start(cfg).unwrap()
    };
    let silent = start(Scenario {
        never_reply: true,
        ..Scenario::default()
    });
    let normal = start(Scenario::default());
    let port = relay(vec![
        (addr(&silent, proto), None),
        (addr(&normal, proto), None),
    ]);
    let mut dev = device(&normal, proto, &regid, &[("reply_timeout_secs", 1)]);
    dev.uri = format!("localhost:{port}");
    let o = register(&dev, TIMEOUT);
    assert_assigned(&o, &regid);
    assert_eq!(silent.connections_accepted(), 1);
    assert_eq!(normal.connections_accepted(), 1);
    assert_eq!(requests(&silent, REGISTER).len(), 1, "sent, never answered");
    assert_eq!(
        requests(&normal, REGISTER).len(),
        1,
        "re-sent after the timeout"
    );
    assert!(
        has_log(
            &regid,
            "no reply to the register request within 1.0 s; reconnecting"
        ),
        "{:#?}",
        logs_for(&regid)
    );
    assert!(o.elapsed >= Duration::from_secs(1), "{:?}", o.elapsed);
    row(
        "server silent for the first register request, reply_timeout_secs=1",
        proto,
        "assigned after 1 reply timeout + reconnect",
        o.elapsed,
        silent.connections_accepted() + normal.connections_accepted(),
    );
}

both!(silent_once_then_recovers => silent_once);

/// The network path dies silently (no FIN, no RST) 300 ms into the first connection, after the
/// register reply: the poll goes nowhere, the keep-alive PINGREQ (keep-alive 1 s) gets no PINGRESP,
/// and the ping timeout reconnects long before the 5 s reply timeout; the poll is re-sent on the
/// new connection and the registration completes.
fn black_hole(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "black-hole",
            // `keepalive` is read as `const int*`: the same bits as this u32.
            options: &[("keepalive", 1)],
            relay: Some(&[Some(Duration::from_millis(300)), None]),
            expect: Expect::Assigned,
            connections: 2..=2,
            why: "one reconnect, after the ping timeout",
            logs: &["no PINGRESP within 1.0 s; reconnecting"],
            fault: "network black hole 300 ms into the connection (keepalive=1)",
            outcome: "assigned after a ping timeout + reconnect",
            ..Case::default()
        },
    );
    assert_eq!(
        log_count(&r.regid, "no reply to"),
        0,
        "{:#?}",
        logs_for(&r.regid)
    );
    let polls = requests(&r.emu, POLL);
    assert!(
        polls.iter().all(|p| p.0 == 2) && !polls.is_empty(),
        "the swallowed poll never arrived; it was re-sent on connection 2: {polls:?}"
    );
    assert!(r.o.elapsed < Duration::from_secs(6), "{:?}", r.o.elapsed);
    r.row();
}

both!(black_hole_is_detected_by_the_ping_timeout => black_hole);

/// No fault: the reference time (register, 202 with retry-after 1, one poll answered 202, a
/// second answered 200, so about 2 s of waiting the service asked for).
fn baseline(proto: Proto) {
    run(
        proto,
        Case {
            name: "no-fault",
            expect: Expect::Assigned,
            connections: 1..=1,
            why: "no fault",
            fault: "none (reference)",
            outcome: "assigned",
            ..Case::default()
        },
    )
    .row();
}

both!(baseline_without_faults => baseline);

// ---- 5xx and 429 storms -----------------------------------------------------------------

/// A storm of transient replies the service ends by itself: each reply is reported TRANSIENT
/// (with its retry-after), the LL client re-sends, the registration completes on the one
/// connection. `requests_seen` is how many (register, poll) requests the emulator then saw.
fn transient_storm(proto: Proto, case: Case, transient: usize, requests_seen: (usize, usize)) {
    let r = run(
        proto,
        Case {
            expect: Expect::Assigned,
            connections: 1..=1,
            why: "a transient reply is not a connection fault",
            outcome: &format!("assigned after {transient} TRANSIENT"),
            ..case
        },
    );
    let o = &r.o;
    assert_eq!(
        o.statuses
            .iter()
            .filter(|s| **s == (PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT, 1))
            .count(),
        transient,
        "TRANSIENT with the retry-after: {o:?}"
    );
    // The LL client registers again while it has no operation id, and polls again after it.
    assert_eq!(
        (
            requests(&r.emu, REGISTER).len(),
            requests(&r.emu, POLL).len()
        ),
        requests_seen
    );
    // ...and waited the retry-after (1 s) each time.
    assert!(
        o.elapsed >= Duration::from_secs(transient as u64),
        "{:?}",
        o.elapsed
    );
    r.row();
}

fn storm_5xx(proto: Proto) {
    // 3 × 503 then the 202; one 202 poll and the final 200
    transient_storm(
        proto,
        Case {
            name: "storm-5xx",
            scenario: error_reply(503, "Service unavailable", Stage::Register, Some(3)),
            fault: "503 to the first 3 register requests",
            ..Case::default()
        },
        3,
        (4, 2),
    );
}

both!(storm_5xx_is_survived => storm_5xx);

/// A 5xx on every request: each reply is TRANSIENT (docs/spec/behaviour.md part 1) and the LL client
/// registers again, but the run of transient replies is bounded by the retry budget
/// (retry_max_attempts 3 here): after 3 retries the error path, once; the connection itself was
/// never at fault, so there is one.
fn endless_5xx(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "endless-5xx",
            scenario: Scenario {
                retry_after: Some(1),
                ..error_reply(500, "Internal error", Stage::Register, None)
            },
            options: &[("retry_max_attempts", 3)],
            timeout: Duration::from_secs(20),
            expect: Expect::ErrorOnce(&[]),
            connections: 1..=1,
            why: "the connection was never at fault",
            logs: &["giving up after 3 retries", "DPS replied 500"],
            fault: "500 to every register request, retry_max_attempts=3",
            // (the 3 is asserted below)
            outcome: "3 TRANSIENT, then the error path once (budget spent)",
            ..Case::default()
        },
    );
    let transient = count(&r.o, PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT);
    assert_eq!(transient, 3, "{:?}", r.o);
    r.row();
}

both!(endless_5xx_ends_when_the_budget_is_spent => endless_5xx);

fn storm_5xx_on_poll(proto: Proto) {
    // one register; 2 × 502, then the scenario's 202 and the final 200
    transient_storm(
        proto,
        Case {
            name: "storm-5xx-poll",
            scenario: error_reply(502, "Bad gateway", Stage::Poll, Some(2)),
            fault: "502 to the first 2 polls",
            ..Case::default()
        },
        2,
        (1, 4),
    );
}

both!(storm_5xx_on_poll_is_survived => storm_5xx_on_poll);

fn storm_429(proto: Proto) {
    // 429 to the register and the next two registers, then 202, one 202 poll and the 200
    transient_storm(
        proto,
        Case {
            name: "storm-429",
            scenario: Scenario {
                throttle_429: 3,
                ..Scenario::default()
            },
            logs: &["DPS replied 429"],
            fault: "429 (retry-after 1) to the first 3 requests",
            ..Case::default()
        },
        3,
        (4, 2),
    );
}

both!(storm_429_is_survived => storm_429);

// ---- refusals: never retried ------------------------------------------------------------

fn connack_refused(proto: Proto, code: u8) {
    let r = run(
        proto,
        Case {
            name: &format!("connack-{code}"),
            scenario: Scenario {
                connack_refuse: Some(code),
                ..Scenario::default()
            },
            expect: Expect::ErrorOnce(&[PROV_DEVICE_ERROR_KEY_UNAUTHORIZED]),
            connections: 1..=1,
            why: "never retried",
            logs: &[&format!("CONNACK refused with code {code}")],
            fault: &format!("CONNACK refused (code {code})"),
            outcome: "error path once + KEY_UNAUTHORIZED, not retried",
            ..Case::default()
        },
    );
    assert!(r.o.statuses.is_empty(), "never connected: {:?}", r.o);
    r.row();
}

both!(connack_not_authorized_is_not_retried => |p| connack_refused(p, 5));

both!(connack_bad_credentials_is_not_retried => |p| connack_refused(p, 4));

fn suback_failure(proto: Proto) {
    let r = run(
        proto,
        Case {
            name: "suback-fail",
            scenario: Scenario {
                suback_fail: true,
                ..Scenario::default()
            },
            expect: Expect::ErrorOnce(&[]),
            connections: 1..=1,
            why: "never retried",
            logs: &["SUBACK refused the subscription"],
            fault: "SUBACK failure (0x80)",
            outcome: "error path once, not retried",
            ..Case::default()
        },
    );
    assert!(requests(&r.emu, REGISTER).is_empty(), "nothing was sent");
    r.row();
}

both!(suback_failure_takes_the_error_path => suback_failure);

// ---- nothing after close or destroy -----------------------------------------------------

/// Opens a handle that is dropped at CONNECT every time with a long backoff and a budget of one
/// reconnect: left alone it would reconnect and take the error path. `close` (or `destroy`)
/// during the backoff must stop all of it.
fn stopped_during_backoff(proto: Proto, destroy_only: bool) {
    let name = if destroy_only { "destroy" } else { "close" };
    let regid = regid(&format!("{name}-in-backoff"), proto);
    let emu = emulator(&regid, drop_after(Stage::Connect, true));
    capture_logs();
    let mut dev = Device::x509_on(&emu, proto, &regid)
        .trace(false)
        .options(&[("retry_initial_ms", 1600), ("retry_max_attempts", 1)]);
    dev.on_connected = Then::Nothing;
    let started = Instant::now();
    let ll = Ll::create(&dev);
    assert_eq!(ll.open(), 0);
    // Run until the first drop put the handle into its backoff (0.8-1.6 s).
    while !has_log(&regid, "reconnecting in") {
        assert!(started.elapsed() < Duration::from_secs(10), "no drop seen");
        ll.dowork();
        std::thread::sleep(Duration::from_millis(2));
    }
    if destroy_only {
        ll.destroy();
        std::thread::sleep(Duration::from_millis(2500));
    } else {
        assert_eq!(ll.close(), 0);
        ll.dowork_for(Duration::from_millis(2500));
        ll.destroy();
    }
    let o = ll.outcome();
    let seen = (o.data_callbacks, o.statuses.len());
    assert_eq!(seen, (0, 0), "no callback after {name}");
    assert_eq!(
        emu.connections_accepted(),
        1,
        "no reconnect after {name} (the backoff would have ended within 1.6 s)"
    );
    assert!(
        !has_log(&regid, "giving up"),
        "the error path ran after {name}: {:#?}",
        logs_for(&regid)
    );
    row(
        &format!("{name} during the reconnect backoff"),
        proto,
        "no callback, no reconnect in the next 2.5 s",
        started.elapsed(),
        emu.connections_accepted(),
    );
}

both!(close_during_backoff_stops_everything => |p| stopped_during_backoff(p, false));

both!(destroy_during_backoff_stops_everything => |p| stopped_during_backoff(p, true));
