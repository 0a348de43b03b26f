//! The retry budget is a hard limit (issue 11 item 1), end to end through the C ABI against
//! the emulator, over MQTT/TLS and MQTT/WSS: from the first fault or transient reply of a run,
//! the error path comes no later than `retry_max_secs` + 1 s, whatever the reply timeout, the
//! backoff and the connect time, and exactly once. And CONNACK 3 ("server unavailable") is
//! retried within that budget while CONNACK 1, 2, 4 and 5 are final (issue 11 item 5).
//!
//! Each case runs on its own thread with its own emulator, so the matrix takes as long as its
//! slowest case (about 21 s). Every case prints a row:
//! `cargo test --test all budget:: -- --nocapture | grep BUDGET-TABLE`.

use std::net::TcpListener;
use std::time::Duration;

use dps_emulator::scenario::{DropAfter, ErrorReply, Scenario, Stage};
use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;
use testkit::*;
use PROV_DEVICE_TRANSPORT_ERROR::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

/// The driver's own limit: far above every budget here, so a late error path is measured, not
/// cut off.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);
/// What the issue allows past the budget.
const SLACK: Duration = Duration::from_secs(1);

fn emulator(regid: &str, scenario: Scenario) -> Emulator {
    quiet_emulator(&[regid], |cfg| cfg.with_scenario(regid, scenario))
}

/// An X.509 device of `emu` with a 50 ms first backoff and no trace.
fn device(emu: &Emulator, proto: Proto, regid: &str, options: &[(&'static str, u32)]) -> Device {
    Device::x509_on(emu, proto, regid)
        .trace(false)
        .options(&[("retry_initial_ms", 50)])
        .options(options)
}

/// One budget run: what it was, and what it measured.
struct Row {
    case: String,
    proto: Proto,
    budget: u32,
    reply_timeout: u32,
    /// From `create` to the outcome, less what came before the first fault (the first reply
    /// timeout, for a server that never completes a connection).
    to_outcome: Duration,
    outcome: Outcome,
    regid: String,
    connections: u64,
}

impl Row {
    fn print(&self) {
        println!(
            "BUDGET-TABLE | {} | {} | {} s | {} s | {:.2} s | {} |",
            self.case,
            self.proto.name(),
            self.budget,
            self.reply_timeout,
            self.to_outcome.as_secs_f64(),
            self.connections
        );
    }

    /// The error path exactly once, one "giving up" line, within the budget + 1 s; and not
    /// much before the budget when `deadline_ends_it` (attempts to spare).
    fn assert_spent(&self, deadline_ends_it: bool) {
        let o = &self.outcome;
        let what = format!(
            "{} {} budget {} s reply timeout {} s",
            self.case,
            self.proto.name(),
            self.budget,
            self.reply_timeout
        );
        assert_eq!(
            o.result,
            Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR),
            "{what}: {o:?}"
        );
        assert_eq!(
            o.data_callbacks, 1,
            "{what}: the error path exactly once: {o:?}"
        );
        let budget = Duration::from_secs(u64::from(self.budget));
        assert!(
            self.to_outcome <= budget + SLACK,
            "{what}: error path {:?} after the first fault",
            self.to_outcome
        );
        if deadline_ends_it {
            assert!(
                self.to_outcome + Duration::from_millis(300) >= budget,
                "{what}: ended at {:?}, before the budget",
                self.to_outcome
            );
        }
        let logs = logs_for(&self.regid);
        let giving_up: Vec<_> = logs
            .iter()
            .filter(|l| l.contains("giving up after"))
            .collect();
        assert_eq!(giving_up.len(), 1, "{what}: {logs:#?}");
    }
}

/// Runs every case on its own thread; prints the rows in order.
fn run_all(cases: Vec<Box<dyn FnOnce() -> Row + Send>>) -> Vec<Row> {
    let rows: Vec<Row> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.into_iter().map(|case| s.spawn(case)).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("case thread"))
            .collect()
    });
    println!("BUDGET-TABLE | case | transport | retry_max_secs | reply_timeout_secs | time to outcome | conns |");
    for row in &rows {
        row.print();
    }
    rows
}

/// The first connection is dropped at CONNECT (the first fault, at once), and every later one
/// is answered up to SUBACK and then never again: each attempt waits a whole reply timeout, and
/// the last is cut at the end of the budget.
fn silent_case(
    proto: Proto,
    budget: u32,
    reply_timeout: u32,
    attempts: u32,
) -> Box<dyn FnOnce() -> Row + Send> {
    Box::new(move || {
        let regid = format!(
            "silent-{budget}-{reply_timeout}-{attempts}-{}",
            proto.name()
        )
        .to_lowercase();
        let emu = emulator(
            &regid,
            Scenario {
                drop_after: Some(DropAfter {
                    stage: Stage::Connect,
                    always: false,
                }),
                never_reply: true,
                ..Scenario::default()
            },
        );
        let options = [
            ("retry_max_secs", budget),
            ("reply_timeout_secs", reply_timeout),
            ("retry_max_attempts", attempts),
        ];
        let outcome = register(&device(&emu, proto, &regid, &options), DRIVER_TIMEOUT);
        Row {
            case: format!("silent server, retry_max_attempts={attempts}"),
            proto,
            budget,
            reply_timeout,
            to_outcome: outcome.elapsed,
            connections: emu.connections_accepted(),
            outcome,
            regid,
        }
    })
}

#[test]
fn a_silent_server_ends_within_the_budget_whatever_the_reply_timeout() {
    let mut cases = Vec::new();
    for proto in Proto::BOTH {
        for budget in [2, 6, 20] {
            for reply_timeout in [1, 5, 30] {
                cases.push(silent_case(proto, budget, reply_timeout, 100));
            }
        }
        // The last attempt may not outlive the budget either: one retry, whose 30 s reply
        // timeout is cut at 2 s and at 6 s.
        for budget in [2, 6] {
            cases.push(silent_case(proto, budget, 30, 1));
        }
    }
    for row in run_all(cases) {
        row.assert_spent(row.case.ends_with("=100"));
        assert!(row.outcome.errors.is_empty(), "{:?}", row.outcome);
        assert!(
            logs_for(&row.regid).iter().any(|l| l.contains("giving up")
                && l.contains("last error: no reply to the register request")),
            "the cut reply timeout is named: {:#?}",
            logs_for(&row.regid)
        );
    }
}

/// A server that accepts TCP and then says nothing (no TLS): the connect never completes, the
/// first fault is the first handshake timeout, the retries' handshakes are cut at the budget.
fn never_connects_case(
    proto: Proto,
    budget: u32,
    reply_timeout: u32,
) -> Box<dyn FnOnce() -> Row + Send> {
    Box::new(move || {
        let regid =
            format!("never-connects-{budget}-{reply_timeout}-{}", proto.name()).to_lowercase();
        // the emulator only lends its PKI and device builder; nothing connects to it
        let emu = emulator(&regid, Scenario::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        let mut dev = device(
            &emu,
            proto,
            &regid,
            &[
                ("retry_max_secs", budget),
                ("reply_timeout_secs", reply_timeout),
                ("retry_max_attempts", 100),
            ],
        );
        dev.uri = format!("localhost:{port}");
        let outcome = register(&dev, DRIVER_TIMEOUT);
        Row {
            case: "connect never completes (TCP accepted, no TLS answer)".into(),
            proto,
            budget,
            reply_timeout,
            to_outcome: outcome
                .elapsed
                .saturating_sub(Duration::from_secs(u64::from(reply_timeout))),
            connections: accepted.load(std::sync::atomic::Ordering::SeqCst),
            outcome,
            regid,
        }
    })
}

#[test]
fn a_connect_that_never_completes_is_cut_at_the_budget() {
    let mut cases = Vec::new();
    for proto in Proto::BOTH {
        for (budget, reply_timeout) in [(2, 1), (2, 5), (6, 5)] {
            cases.push(never_connects_case(proto, budget, reply_timeout));
        }
    }
    for row in run_all(cases) {
        row.assert_spent(true);
        assert!(row.connections >= 2, "retried: {}", row.connections);
        assert!(
            row.outcome.statuses.is_empty(),
            "never connected: {:?}",
            row.outcome
        );
        assert!(
            logs_for(&row.regid)
                .iter()
                .any(|l| l.contains("giving up") && l.contains("last error: no CONNACK")),
            "{:#?}",
            logs_for(&row.regid)
        );
    }
}

/// A transient reply to every request: 429 with retry-after 5 (`throttle`), or 500.
fn storm_case(proto: Proto, budget: u32, throttle: bool) -> Box<dyn FnOnce() -> Row + Send> {
    Box::new(move || {
        let regid = format!("storm-{budget}-{}", proto.name()).to_lowercase();
        let scenario = match throttle {
            true => Scenario {
                throttle_429: 1000,
                retry_after: Some(5),
                ..Scenario::default()
            },
            false => Scenario {
                error: Some(ErrorReply {
                    status: 500,
                    error_code: 500000,
                    message: "Internal error".into(),
                    on: Stage::Register,
                    times: None,
                }),
                ..Scenario::default()
            },
        };
        let emu = emulator(&regid, scenario);
        let options = [("retry_max_secs", budget), ("retry_max_attempts", 100)];
        let outcome = register(&device(&emu, proto, &regid, &options), DRIVER_TIMEOUT);
        Row {
            case: match throttle {
                true => "429 (retry-after 5) to every request".into(),
                false => "500 to every register request".into(),
            },
            proto,
            budget,
            reply_timeout: 30,
            to_outcome: outcome.elapsed,
            connections: emu.connections_accepted(),
            outcome,
            regid,
        }
    })
}

/// 429 with retry-after 5 to every request, budget 2 s: the deadline passes while the LL
/// client waits to register again. 500 (retry-after 1) to every register request, budget 6 s.
#[test]
fn a_transient_storm_ends_within_the_budget() {
    let mut cases = Vec::new();
    for proto in Proto::BOTH {
        cases.push(storm_case(proto, 2, true));
        cases.push(storm_case(proto, 6, false));
    }
    for row in run_all(cases) {
        row.assert_spent(true);
        assert_eq!(
            row.connections, 1,
            "a transient reply is not a connection fault"
        );
        let transient = row
            .outcome
            .statuses
            .iter()
            .filter(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT)
            .count();
        // retry-after 5 > budget 2: one reply; retry-after 1 over 6 s: about 6
        let want = if row.budget == 2 { 1..=1 } else { 4..=7 };
        assert!(
            want.contains(&transient),
            "{} TRANSIENT: {:?}",
            transient,
            row.outcome
        );
    }
}

// ---- CONNACK 3 is transient, 1 2 4 5 are final ------------------------------------------------

#[test]
fn connack_3_is_retried_and_the_registration_completes() {
    for proto in Proto::BOTH {
        let regid = format!("connack-3-twice-{}", proto.name()).to_lowercase();
        let emu = emulator(
            &regid,
            Scenario {
                connack_refuse: Some(3),
                connack_times: Some(2),
                ..Scenario::default()
            },
        );
        let o = register(&device(&emu, proto, &regid, &[]), DRIVER_TIMEOUT);
        assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
        assert_eq!(o.data_callbacks, 1);
        assert!(o.errors.is_empty(), "not KEY_UNAUTHORIZED: {o:?}");
        let connected = o
            .statuses
            .iter()
            .filter(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS_CONNECTED)
            .count();
        assert_eq!(connected, 1, "{o:?}");
        assert_eq!(emu.connections_accepted(), 3, "two refusals, then accepted");
        let retried = logs_for(&regid)
            .iter()
            .filter(|l| l.contains("CONNACK refused with code 3: server unavailable; reconnecting"))
            .count();
        assert_eq!(retried, 2, "{:#?}", logs_for(&regid));
        println!(
            "BUDGET-TABLE | CONNACK 3 to the first 2 connections | {} | 180 s | 30 s | {:.2} s (assigned) | 3 |",
            proto.name(),
            o.elapsed.as_secs_f64()
        );
    }
}

#[test]
fn connack_3_every_time_ends_within_the_budget_without_key_unauthorized() {
    let cases: Vec<Box<dyn FnOnce() -> Row + Send>> = Proto::BOTH
        .into_iter()
        .map(|proto| -> Box<dyn FnOnce() -> Row + Send> {
            Box::new(move || {
                let regid = format!("connack-3-always-{}", proto.name()).to_lowercase();
                let emu = emulator(
                    &regid,
                    Scenario {
                        connack_refuse: Some(3),
                        ..Scenario::default()
                    },
                );
                let options = [("retry_max_secs", 2), ("retry_max_attempts", 100)];
                let outcome = register(&device(&emu, proto, &regid, &options), DRIVER_TIMEOUT);
                Row {
                    case: "CONNACK 3 to every connection".into(),
                    proto,
                    budget: 2,
                    reply_timeout: 30,
                    to_outcome: outcome.elapsed,
                    connections: emu.connections_accepted(),
                    outcome,
                    regid,
                }
            })
        })
        .collect();
    for row in run_all(cases) {
        row.assert_spent(true);
        assert!(row.outcome.errors.is_empty(), "{:?}", row.outcome);
        assert!(row.connections >= 3, "{} connections", row.connections);
    }
}

#[test]
fn connack_1_2_4_5_are_final() {
    for proto in Proto::BOTH {
        for code in [1u8, 2, 4, 5] {
            let regid = format!("connack-final-{code}-{}", proto.name()).to_lowercase();
            let emu = emulator(
                &regid,
                Scenario {
                    connack_refuse: Some(code),
                    ..Scenario::default()
                },
            );
            let o = register(&device(&emu, proto, &regid, &[]), DRIVER_TIMEOUT);
            assert_eq!(
                o.result,
                Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR),
                "{code}: {o:?}"
            );
            assert_eq!(o.data_callbacks, 1);
            assert_eq!(o.errors, vec![PROV_DEVICE_ERROR_KEY_UNAUTHORIZED], "{code}");
            assert_eq!(emu.connections_accepted(), 1, "{code}: never retried");
            assert!(
                o.elapsed < Duration::from_secs(2),
                "{code}: {:?}",
                o.elapsed
            );
        }
    }
}
