//! Leak check: N (default 1,000) create → options → open → register → close → destroy cycles
//! through the C table, each a complete registration against the DPS emulator (run as a separate
//! process so that its own memory does not count), alternating MQTT/WSS × X.509/symmetric key.
//! Samples this process's VmRSS, open file descriptors and threads every 100 cycles, prints them,
//! and exits non-zero when RSS grew more than the bound from cycle 100 to the last cycle, or when
//! descriptors or threads grew at all.
//!
//! ```text
//! cargo build --release -p dps-emulator --example cycles
//! target/release/examples/cycles [CYCLES] [--max-growth-kb KB]
//! ```
//! The emulator binary is `$DPS_EMULATOR`, or `dps-emulator` next to the examples directory.
//! scripts/cycles.sh does both.

use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use prov_mqtt_transport::ffi::PROV_DEVICE_TRANSPORT_RESULT;
use testkit::emulator::Process;
use testkit::{x509, Auth, Device, Ll, Proto, SCOPE};

const X509_ID: &str = "cycles-x509";
const SAS_ID: &str = "cycles-sas";
const KEY: &str = "Y3ljbGVzLWtleS1mb3ItdGhlLWxlYWstY2hlY2stMDE=";

/// (VmRSS kB, open descriptors, threads) of this process.
fn sample() -> (u64, usize, u64) {
    let f = testkit::process::figures();
    (f.rss_kb, f.fds, f.threads)
}

/// One create → open → register → close → destroy cycle; true when assigned.
fn cycle(emu: &Process, pki: &Pki, i: usize) -> bool {
    let ws = i % 2 == 1;
    let sas = (i / 2) % 2 == 1;
    let (proto, uri) = match ws {
        true => (Proto::Ws, &emu.ws),
        false => (Proto::Mqtt, &emu.mqtt),
    };
    let (regid, auth) = match sas {
        true => (
            SAS_ID,
            Auth::SymmetricKey {
                key_b64: KEY.into(),
            },
        ),
        false => (X509_ID, x509(pki, X509_ID)),
    };
    let mut d = Device::new(proto, uri.as_str(), regid, auth)
        .trusting(&pki.root_ca_pem)
        .options(&[("reply_timeout_secs", 10)])
        .trace(false);
    d.payload = Some(serde_json::json!({ "cycle": true }));
    // no need to honour the retry interval here: poll at once
    d.poll_at_once = true;
    let ll = Ll::create(&d);
    assert_eq!(ll.open(), 0);
    ll.pump_every(Duration::from_secs(30), Duration::from_micros(300));
    ll.destroy();
    let o = ll.outcome();
    o.result == Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK)
        && o.hub.as_deref() == Some("emulated-hub.azure-devices.net")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut cycles = 1000usize;
    let mut max_growth_kb = 8 * 1024u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-growth-kb" => max_growth_kb = args.next().unwrap().parse().unwrap(),
            n => {
                cycles = n
                    .parse()
                    .expect("usage: cycles [CYCLES] [--max-growth-kb KB]")
            }
        }
    }
    assert!(
        cycles >= 200,
        "at least 200 cycles (RSS is compared from cycle 100)"
    );
    // the same LL-client stand-in as the tests, without their log capture (it would grow)
    testkit::log::off();
    prov_mqtt_transport::log::set_sink(|level, line| {
        if level == prov_mqtt_transport::log::Level::Error {
            eprintln!("{line}");
        }
    });
    let pki = Pki::generate(&[X509_ID]);
    let emu = Process::spawn(
        &pki,
        SCOPE,
        &["--symmetric-key".into(), format!("{SAS_ID}={KEY}")],
    );
    let started = Instant::now();
    let (rss0, fds0, threads0) = sample();
    println!("cycles: before the first cycle: VmRSS {rss0} kB, {fds0} fds, {threads0} threads");
    let mut at_100 = None;
    let mut failures = 0;
    for i in 1..=cycles {
        if !cycle(&emu, &pki, i - 1) {
            failures += 1;
            eprintln!("cycles: cycle {i} did not end assigned");
        }
        if i % 100 == 0 {
            let (rss, fds, threads) = sample();
            println!(
                "cycles: after {i:>5} cycles ({:.1} s): VmRSS {rss} kB, {fds} fds, {threads} threads",
                started.elapsed().as_secs_f64()
            );
            if i == 100 {
                at_100 = Some((rss, fds, threads));
            }
        }
    }
    // let the I/O thread finish the last graceful closes
    std::thread::sleep(Duration::from_millis(500));
    let (rss, fds, threads) = sample();
    let (rss100, fds100, threads100) = at_100.unwrap();
    let growth = rss as i64 - rss100 as i64;
    println!(
        "cycles: {cycles} cycles in {:.1} s, {failures} not assigned; VmRSS {rss100} kB at 100 -> {rss} kB at {cycles} (growth {growth} kB, bound {max_growth_kb} kB); fds {fds100} -> {fds}; threads {threads100} -> {threads}",
        started.elapsed().as_secs_f64()
    );
    let mut ok = true;
    if failures > 0 {
        eprintln!("cycles: FAIL: {failures} cycles did not register");
        ok = false;
    }
    if growth > max_growth_kb as i64 {
        eprintln!("cycles: FAIL: RSS grew {growth} kB from cycle 100 to {cycles}");
        ok = false;
    }
    if fds > fds100 || threads > threads100 {
        eprintln!("cycles: FAIL: descriptors or threads leaked");
        ok = false;
    }
    drop(emu);
    std::process::exit(if ok { 0 } else { 1 });
}
