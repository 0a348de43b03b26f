//! The chaos run: many registrations, `--parallel` at a time, alternating MQTT/TLS and MQTT/WSS,
//! through a relay on loopback that gives each connection a random fate (passed through clean,
//! dropped at a random byte, reset at a random byte, reset during the TLS handshake,
//! black-holed, every chunk delayed, split into 1-byte writes), against the DPS emulator (its
//! own process) with per-device scenarios (normal, a few 429s, a 429 storm, a few 503s, a 500
//! storm, silence, slow replies). Small budgets: `retry_max_secs` 5, `reply_timeout_secs` 2.
//!
//! Every registration must end exactly once: assigned, or one `data_callback(ERROR)` no later
//! than its budget (the run of faults or transient replies it ends started at most
//! `retry_max_secs` + 1 s before); no callback may come after destroy; at the end (every
//! connection closed) this process's descriptors and threads are back to what they were after
//! the first wave, and its RSS within `--max-growth-mb`. It prints the count of each outcome,
//! the slowest time to outcome against its budget and the figures, and exits non-zero on any
//! violation. The relay runs in this process (one thread): its figures are in the process's, and
//! it has closed every connection before the end is measured.
//!
//! ```text
//! cargo build -p dps-emulator && cargo build --example chaos
//! target/debug/examples/chaos [--registrations 2000] [--parallel 50] [--seed N] [--max-growth-mb 30]
//! ```
//! The emulator binary is `$DPS_EMULATOR`, or `dps-emulator` next to the examples directory.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use dps_emulator::sas::derive_device_key;
use prov_mqtt_transport::ffi::PROV_DEVICE_TRANSPORT_RESULT::*;
use prov_mqtt_transport::ffi::PROV_DEVICE_TRANSPORT_STATUS::*;
use testkit::emulator::Process;
use testkit::{Auth, Device, Ll, Proto, SCOPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GROUP_KEY: &str = "Y2hhb3MtZ3JvdXAta2V5LWZvci10aGUtY2hhb3MtcnVu";
const RETRY_MAX_SECS: u32 = 5;
const REPLY_TIMEOUT_SECS: u32 = 2;
/// The error path comes at most this long after the run it ends started.
const BUDGET: Duration = Duration::from_secs(RETRY_MAX_SECS as u64 + 1);
/// A registration that has not ended this long after its last sign of life is a violation.
const STALL: Duration = Duration::from_secs(30);
/// How long destroyed handles are watched for late callbacks.
const WATCH_AFTER_DESTROY: Duration = Duration::from_secs(2);

// ---- options ------------------------------------------------------------------------------

struct Options {
    registrations: usize,
    parallel: usize,
    seed: u64,
    max_growth_mb: f64,
}

fn options() -> Options {
    let mut o = Options {
        registrations: 2000,
        parallel: 50,
        seed: 0x5eed,
        max_growth_mb: 30.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| {
            args.get(i + 1)
                .unwrap_or_else(|| usage(&format!("{} needs a value", args[i])))
        };
        match args[i].as_str() {
            "--registrations" => o.registrations = parse(value(i)),
            "--parallel" => o.parallel = parse(value(i)),
            "--seed" => o.seed = parse(value(i)),
            "--max-growth-mb" => o.max_growth_mb = parse(value(i)),
            other => usage(&format!("unknown argument {other:?}")),
        }
        i += 2;
    }
    if o.registrations == 0 || o.parallel == 0 {
        usage("--registrations and --parallel must be at least 1");
    }
    o
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("{s:?} is not a number")))
}

fn usage(why: &str) -> ! {
    eprintln!("chaos: {why}\nusage: chaos [--registrations N] [--parallel N] [--seed N] [--max-growth-mb MB]");
    std::process::exit(2)
}

// ---- the emulator's scenarios ---------------------------------------------------------------

/// What the emulator does for a device, by share of the registrations.
const SCENARIOS: &[(&str, u32, &str)] = &[
    ("normal", 50, "{}"),
    ("429-few", 10, r#"{"throttle_429": 2}"#),
    ("429-storm", 6, r#"{"throttle_429": 1000}"#),
    (
        "503-few",
        10,
        r#"{"error": {"status": 503, "error_code": 503000, "on": "register", "times": 2}}"#,
    ),
    (
        "500-storm",
        6,
        r#"{"error": {"status": 500, "error_code": 500000, "on": "register"}}"#,
    ),
    ("silent", 6, r#"{"never_reply": true}"#),
    ("slow", 12, r#"{"latency_ms": 400}"#),
];

fn pick_scenario(rng: &mut fastrand::Rng) -> usize {
    let total: u32 = SCENARIOS.iter().map(|s| s.1).sum();
    let mut roll = rng.u32(0..total);
    for (i, s) in SCENARIOS.iter().enumerate() {
        if roll < s.1 {
            return i;
        }
        roll -= s.1;
    }
    0
}

// ---- the relay ----------------------------------------------------------------------------

/// What the relay does to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Clean,
    /// close both sides (FIN) once this many bytes went through
    Drop(usize),
    /// reset (RST) once this many bytes went through
    Reset(usize),
    /// reset within the first bytes: during the TLS handshake (or the WebSocket upgrade)
    ResetInTls(usize),
    /// forward nothing more once this many bytes went through (reading the device's bytes, or
    /// not reading at all, so that its writes stop completing)
    BlackHole {
        after: usize,
        read: bool,
    },
    /// every chunk waits this many ms
    Delay(u64),
    /// every byte its own write
    Split,
}

impl Fate {
    fn name(self) -> &'static str {
        match self {
            Fate::Clean => "clean",
            Fate::Drop(_) => "dropped",
            Fate::Reset(_) => "reset",
            Fate::ResetInTls(_) => "reset in TLS",
            Fate::BlackHole { .. } => "black hole",
            Fate::Delay(_) => "delayed",
            Fate::Split => "1-byte writes",
        }
    }

    fn limit(self) -> Option<usize> {
        match self {
            Fate::Drop(n) | Fate::Reset(n) | Fate::ResetInTls(n) => Some(n),
            Fate::BlackHole { after, .. } => Some(after),
            _ => None,
        }
    }

    fn roll(rng: &mut fastrand::Rng) -> Fate {
        match rng.u32(0..100) {
            0..=44 => Fate::Clean,
            45..=53 => Fate::Drop(rng.usize(0..6000)),
            54..=60 => Fate::Reset(rng.usize(0..6000)),
            61..=67 => Fate::ResetInTls(rng.usize(1..1500)),
            68..=75 => Fate::BlackHole {
                after: rng.usize(0..6000),
                read: rng.bool(),
            },
            76..=87 => Fate::Delay(rng.u64(10..250)),
            _ => Fate::Split,
        }
    }
}

struct Relay {
    mqtt: u16,
    ws: u16,
    active: Arc<AtomicUsize>,
    fates: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

fn relay(mqtt: SocketAddr, ws: SocketAddr, seed: u64) -> Relay {
    let active = Arc::new(AtomicUsize::new(0));
    let fates = Arc::new(Mutex::new(BTreeMap::new()));
    let bind = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    let (lm, lw) = (bind(), bind());
    let ports = (
        lm.local_addr().unwrap().port(),
        lw.local_addr().unwrap().port(),
    );
    let (a, f) = (active.clone(), fates.clone());
    std::thread::Builder::new()
        .name("chaos-relay".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
                let serve = |listener: std::net::TcpListener, upstream: SocketAddr| {
                    let (rng, active, fates) = (rng.clone(), a.clone(), f.clone());
                    async move {
                        let listener = TcpListener::from_std(listener).unwrap();
                        loop {
                            let Ok((device, _)) = listener.accept().await else {
                                continue;
                            };
                            let fate = Fate::roll(&mut rng.lock().unwrap());
                            *fates.lock().unwrap().entry(fate.name()).or_default() += 1;
                            active.fetch_add(1, Ordering::SeqCst);
                            let active = active.clone();
                            tokio::spawn(async move {
                                let _ = pass(device, upstream, fate).await;
                                active.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                    }
                };
                tokio::join!(serve(lm, mqtt), serve(lw, ws));
            })
        })
        .unwrap();
    Relay {
        mqtt: ports.0,
        ws: ports.1,
        active,
        fates,
    }
}

/// One connection through the relay, to its fate.
async fn pass(mut device: TcpStream, upstream: SocketAddr, fate: Fate) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    device.set_nodelay(true)?;
    server.set_nodelay(true)?;
    if matches!(fate, Fate::Reset(_) | Fate::ResetInTls(_)) {
        device.set_zero_linger()?;
    }
    let (mut dr, mut dw) = device.split();
    let (mut sr, mut sw) = server.split();
    let (mut up, mut down) = ([0u8; 4096], [0u8; 4096]);
    let mut passed = 0usize;
    loop {
        let (n, to_server) = tokio::select! {
            n = dr.read(&mut up) => (n?, true),
            n = sr.read(&mut down) => (n?, false),
        };
        if n == 0 {
            return Ok(()); // one side closed: close the other
        }
        let data = if to_server { &up[..n] } else { &down[..n] };
        let room = fate.limit().map_or(n, |l| l.saturating_sub(passed).min(n));
        let out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send) = match to_server {
            true => &mut sw,
            false => &mut dw,
        };
        match fate {
            Fate::Delay(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                out.write_all(data).await?;
            }
            Fate::Split => {
                for b in data {
                    out.write_all(std::slice::from_ref(b)).await?;
                }
            }
            _ => out.write_all(&data[..room]).await?,
        }
        passed += room;
        if room == n {
            continue;
        }
        // the limit is reached: the fate strikes
        match fate {
            Fate::BlackHole { read: true, .. } => {
                // swallow the device's bytes until it gives up (or a minute passes)
                let swallow = async {
                    let mut sink = [0u8; 4096];
                    while dr.read(&mut sink).await.unwrap_or(0) > 0 {}
                };
                let _ = tokio::time::timeout(Duration::from_secs(60), swallow).await;
            }
            Fate::BlackHole { read: false, .. } => {
                // read nothing: once the buffers are full the device's writes do not complete
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
            _ => {} // dropped: FIN, or RST with the zero linger set above
        }
        return Ok(());
    }
}

// ---- the registrations --------------------------------------------------------------------

/// What the library said about a registration: the start of its fault runs and its last error.
#[derive(Default)]
struct Said {
    runs: HashMap<String, Instant>,
    errors: HashMap<String, String>,
}

fn listen_to_the_log() -> Arc<Mutex<Said>> {
    let said = Arc::new(Mutex::new(Said::default()));
    let s = said.clone();
    prov_mqtt_transport::log::set_sink(move |_, line| {
        let Some(regid) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(id, _)| id.to_owned())
        else {
            return;
        };
        let mut s = s.lock().unwrap();
        if line.contains("(attempt 1 of") {
            // a run lasts until the next progress: keep its first fault
            s.runs.entry(regid).or_insert_with(Instant::now);
        } else if line.contains(" error [") {
            s.errors.insert(regid, line.to_owned());
        }
    });
    said
}

struct Slot {
    regid: String,
    scenario: usize,
    ll: Ll,
    started: Instant,
    /// the last sign of progress (a 202 reply), or the start
    progress: Instant,
    /// the first TRANSIENT since the last progress
    transient: Option<Instant>,
    statuses_seen: usize,
    /// when the outcome came, and the doworks still to run after it
    ended: Option<(Instant, u32)>,
}

#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<(&'static str, &'static str), usize>,
    reasons: BTreeMap<String, usize>,
    violations: Vec<String>,
    slowest_assigned: Duration,
    /// the error outcome that came closest to (or past) the end of its budget
    tightest: Option<(Duration, Duration, String)>,
}

fn proc_figures() -> (f64, usize, usize) {
    let f = testkit::process::figures();
    (f.rss_mb(), f.fds, f.threads as usize)
}

struct Run<'a> {
    relay: &'a Relay,
    ca: String,
    said: Arc<Mutex<Said>>,
    scenario_of: Vec<usize>,
    tally: Tally,
    watched: Vec<(Ll, Instant, String)>,
}

impl Run<'_> {
    fn start(&mut self, n: usize) -> Slot {
        let proto = match n % 2 {
            0 => Proto::Mqtt,
            _ => Proto::Ws,
        };
        let scenario = self.scenario_of[n];
        let regid = format!("chaos-{n}-{}", SCENARIOS[scenario].0);
        let port = match proto {
            Proto::Mqtt => self.relay.mqtt,
            Proto::Ws => self.relay.ws,
        };
        let device = Device::new(
            proto,
            format!("localhost:{port}"),
            &regid,
            Auth::SymmetricKey {
                key_b64: derive_device_key(GROUP_KEY, &regid),
            },
        )
        .trusting(&self.ca)
        .trace(false)
        .options(&[
            ("retry_max_secs", RETRY_MAX_SECS),
            ("reply_timeout_secs", REPLY_TIMEOUT_SECS),
            ("retry_initial_ms", 100),
        ]);
        let ll = Ll::create(&device);
        assert_eq!(ll.open(), 0, "{regid}: open");
        let now = Instant::now();
        Slot {
            regid,
            scenario,
            ll,
            started: now,
            progress: now,
            transient: None,
            statuses_seen: 0,
            ended: None,
        }
    }

    /// One round for one registration; true when it is finished with.
    fn step(&mut self, s: &mut Slot, now: Instant) -> bool {
        s.ll.step(now);
        let outcome = s.ll.outcome().clone();
        for (status, _) in &outcome.statuses[s.statuses_seen..] {
            match *status {
                PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING => {
                    s.progress = now;
                    s.transient = None;
                    self.said.lock().unwrap().runs.remove(&s.regid);
                }
                PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT => {
                    s.transient.get_or_insert(now);
                }
                _ => {}
            }
        }
        s.statuses_seen = outcome.statuses.len();
        match &mut s.ended {
            None if outcome.data_callbacks > 0 => {
                self.record(s, &outcome, now);
                s.ended = Some((now, 20)); // a few more rounds: nothing may come now
                false
            }
            None if now - s.progress > STALL => {
                self.tally.violations.push(format!(
                    "{}: no outcome {:.1} s after its last progress",
                    s.regid,
                    (now - s.progress).as_secs_f64()
                ));
                true
            }
            None => false,
            Some((_, 0)) => {
                if outcome.data_callbacks != 1 {
                    self.tally.violations.push(format!(
                        "{}: {} data callbacks",
                        s.regid, outcome.data_callbacks
                    ));
                }
                true
            }
            Some((_, rounds)) => {
                *rounds -= 1;
                false
            }
        }
    }

    fn record(&mut self, s: &Slot, outcome: &testkit::Outcome, now: Instant) {
        let scenario = SCENARIOS[s.scenario].0;
        let (said_run, said_error) = {
            let mut said = self.said.lock().unwrap();
            (said.runs.remove(&s.regid), said.errors.remove(&s.regid))
        };
        match outcome.result {
            Some(PROV_DEVICE_TRANSPORT_RESULT_OK) => {
                *self
                    .tally
                    .outcomes
                    .entry((scenario, "assigned"))
                    .or_default() += 1;
                self.tally.slowest_assigned = self.tally.slowest_assigned.max(now - s.started);
            }
            _ => {
                let reason = said_error
                    .as_deref()
                    .map(|l| l.split_once("]: ").map_or(l, |(_, r)| r))
                    .map(reason_class)
                    .unwrap_or_else(|| "no error line".into());
                *self.tally.reasons.entry(reason).or_default() += 1;
                *self.tally.outcomes.entry((scenario, "error")).or_default() += 1;
                let run = match (said_run, s.transient) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(run) = run {
                    let took = now - run;
                    let line = format!(
                        "{} ({scenario}, {}): error {:.2} s after its run started (budget {:.0} s): {}",
                        s.regid,
                        s.ll.device().proto.name(),
                        took.as_secs_f64(),
                        BUDGET.as_secs_f64(),
                        said_error.as_deref().unwrap_or("?")
                    );
                    if took > BUDGET + Duration::from_millis(100) {
                        self.tally.violations.push(line.clone());
                    }
                    if self.tally.tightest.as_ref().map_or(true, |t| took > t.0) {
                        self.tally.tightest = Some((took, BUDGET, line));
                    }
                }
            }
        }
    }

    fn destroy(&mut self, s: Slot) {
        s.ll.destroy();
        self.watched.push((s.ll, Instant::now(), s.regid));
    }

    /// Destroyed handles: no callback may come after destroy.
    fn watch(&mut self, all: bool) {
        let now = Instant::now();
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.watched)
            .into_iter()
            .partition(|(_, at, _)| all || now - *at > WATCH_AFTER_DESTROY);
        self.watched = keep;
        for (ll, _, regid) in done {
            let late = ll.outcome().late;
            if late > 0 {
                self.tally
                    .violations
                    .push(format!("{regid}: {late} callbacks after destroy"));
            }
        }
    }

    /// Runs registrations `range`, `parallel` at a time, to the end.
    fn wave(&mut self, range: std::ops::Range<usize>, parallel: usize) {
        let mut next = range.start;
        let mut active: Vec<Slot> = Vec::new();
        while next < range.end || !active.is_empty() {
            while active.len() < parallel && next < range.end {
                let slot = self.start(next);
                active.push(slot);
                next += 1;
            }
            let now = Instant::now();
            let mut i = 0;
            while i < active.len() {
                let mut slot = active.swap_remove(i);
                if self.step(&mut slot, now) {
                    self.destroy(slot);
                } else {
                    active.push(slot);
                    let last = active.len() - 1;
                    active.swap(i, last);
                    i += 1;
                }
            }
            self.watch(false);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until every connection through the relay is closed and destroyed handles are
    /// watched, then a little longer (closed connections' tasks end within 2 s).
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.relay.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(WATCH_AFTER_DESTROY + Duration::from_millis(500));
        self.watch(true);
    }
}

/// The reason of an error line without its numbers and names (for counting).
fn reason_class(reason: &str) -> String {
    let reason = reason.split(" trackingId ").next().unwrap_or(reason);
    let mut out: String = reason
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    if let Some(i) = out.find("; last error: ") {
        out = format!(
            "retry budget spent; last error: {}",
            &out[i + 14..].chars().take(90).collect::<String>()
        );
    }
    out.chars().take(140).collect()
}

fn main() {
    let o = options();
    let said = listen_to_the_log();
    let pki = Pki::generate(&[]);
    let dir = std::env::temp_dir().join(format!("chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let scenario_of: Vec<usize> = (0..o.registrations)
        .map(|_| pick_scenario(&mut rng))
        .collect();
    let scenarios: serde_json::Map<String, serde_json::Value> = scenario_of
        .iter()
        .enumerate()
        .filter(|(_, &s)| s != 0)
        .map(|(n, &s)| {
            (
                format!("chaos-{n}-{}", SCENARIOS[s].0),
                serde_json::from_str(SCENARIOS[s].2).unwrap(),
            )
        })
        .collect();
    let config = dir.join("scenarios.json");
    std::fs::write(
        &config,
        serde_json::json!({ "scenarios": scenarios }).to_string(),
    )
    .unwrap();
    let emulator = Process::spawn(
        &pki,
        SCOPE,
        &[
            "--config".into(),
            config.display().to_string(),
            "--group-key".into(),
            GROUP_KEY.into(),
        ],
    );
    let addr = |hostport: &str| -> SocketAddr {
        let port = hostport.rsplit(':').next().unwrap().parse().unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let relay = relay(addr(&emulator.mqtt), addr(&emulator.ws), o.seed);
    let mut run = Run {
        relay: &relay,
        ca: pki.root_ca_pem.clone(),
        said,
        scenario_of,
        tally: Tally::default(),
        watched: Vec::new(),
    };
    let started = Instant::now();
    let first = o.parallel.min(o.registrations);
    println!(
        "CHAOS | {} registrations, {} at a time, MQTT and WSS alternating, seed {}; budgets: \
         retry_max_secs {RETRY_MAX_SECS}, reply_timeout_secs {REPLY_TIMEOUT_SECS}",
        o.registrations, o.parallel, o.seed
    );
    run.wave(0..first, o.parallel);
    run.settle();
    let (rss0, fds0, threads0) = proc_figures();
    println!(
        "CHAOS | after the first wave ({first}, {:.1} s): RSS {rss0:.1} MB, {fds0} descriptors, {threads0} threads",
        started.elapsed().as_secs_f64()
    );
    run.wave(first..o.registrations, o.parallel);
    run.settle();
    let (rss1, fds1, threads1) = proc_figures();
    let elapsed = started.elapsed();
    drop(emulator);
    let _ = std::fs::remove_dir_all(&dir);

    let t = &mut run.tally;
    let total: usize = t.outcomes.values().sum();
    println!(
        "CHAOS | {total} registrations ended in {:.1} s",
        elapsed.as_secs_f64()
    );
    for (scenario, _, _) in SCENARIOS {
        let get = |what| t.outcomes.get(&(*scenario, what)).copied().unwrap_or(0);
        println!(
            "CHAOS | scenario {scenario:<10} | assigned {:>5} | error {:>5}",
            get("assigned"),
            get("error")
        );
    }
    let count = |what| {
        t.outcomes
            .iter()
            .filter(|(k, _)| k.1 == what)
            .map(|(_, v)| v)
            .sum::<usize>()
    };
    println!(
        "CHAOS | outcomes: assigned {}, error {}",
        count("assigned"),
        count("error")
    );
    for (reason, n) in &t.reasons {
        println!("CHAOS | error {n:>5} x {reason}");
    }
    for (fate, n) in relay.fates.lock().unwrap().iter() {
        println!("CHAOS | relay: {n:>5} connections {fate}");
    }
    println!(
        "CHAOS | slowest assigned: {:.2} s from open",
        t.slowest_assigned.as_secs_f64()
    );
    match &t.tightest {
        Some((took, budget, line)) => println!(
            "CHAOS | slowest error against its budget: {:.2} s of {:.0} s: {line}",
            took.as_secs_f64(),
            budget.as_secs_f64()
        ),
        None => println!("CHAOS | no error outcome ended a run of faults"),
    }
    println!(
        "CHAOS | end: RSS {rss1:.1} MB ({:+.1}), {fds1} descriptors ({:+}), {threads1} threads ({:+})",
        rss1 - rss0,
        fds1 as i64 - fds0 as i64,
        threads1 as i64 - threads0 as i64
    );
    if total != o.registrations {
        t.violations.push(format!(
            "{total} of {} registrations ended",
            o.registrations
        ));
    }
    if fds1 > fds0 {
        t.violations
            .push(format!("descriptors grew from {fds0} to {fds1}"));
    }
    if threads1 > threads0 {
        t.violations
            .push(format!("threads grew from {threads0} to {threads1}"));
    }
    if rss1 - rss0 > o.max_growth_mb {
        t.violations.push(format!(
            "RSS grew by {:.1} MB (bound {} MB)",
            rss1 - rss0,
            o.max_growth_mb
        ));
    }
    if t.violations.is_empty() {
        println!("CHAOS | OK: every registration ended exactly once, within its budget; nothing after destroy; flat");
        return;
    }
    for v in &t.violations {
        println!("CHAOS | VIOLATION: {v}");
    }
    std::process::exit(1);
}
