//! Benchmark driver for `scripts/bench.sh` (not a test; prints JSON lines for benches/run.py).
//!
//! It drives the provider table with the test kit's LL-client stand-in (`testkit::Ll`: create,
//! options, open, a `dowork` loop, register on CONNECTED, poll after ASSIGNING, close inside the
//! data callback, destroy), for one device or for thousands on one thread.
//!
//! ```text
//! bench setup  --ca FILE [--native] [--reps N] [--uri HOST]          open/first dowork -> TCP accept
//! bench idle   --uri H:P --ca FILE --group-key K --scope S [--ms D] [--wait-go]
//! bench fleet  --uri H:P --ca FILE --group-key K --scope S --n N [--ws]
//! bench wakeups --uri H:P --ca FILE --group-key K --scope S --n N --ms W [--ws] [--wait-go]
//! ```
//!
//! `wakeups` (issue 14, goal 4): N registrations get their 202 and wait out a long retry-after;
//! over W ms the I/O thread's context switches (its wake-ups) are counted, then again over W ms
//! once every handle is destroyed (idle between registrations). With `--wait-go` it prints the
//! I/O thread's id before each window and waits for a line on stdin (benches/wakeups.py attaches
//! strace to count the syscalls).
#![allow(clippy::missing_safety_doc)]

use std::io::BufRead;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prov_mqtt_transport::ffi::*;
use testkit::{Auth, Device, Ll, Proto};

#[derive(Default)]
struct Args {
    mode: String,
    uri: String,
    ca: String,
    group_key: String,
    scope: String,
    n: usize,
    ms: u64,
    reps: usize,
    ws: bool,
    native: bool,
    wait_go: bool,
}

fn args() -> Args {
    let mut a = Args {
        scope: "0ne00000000".into(),
        n: 1,
        ms: 1000,
        reps: 5,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().unwrap_or_default();
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--uri" => a.uri = val(),
            "--ca" => a.ca = std::fs::read_to_string(val()).expect("read --ca"),
            "--group-key" => a.group_key = val(),
            "--scope" => a.scope = val(),
            "--n" => a.n = val().parse().expect("--n"),
            "--ms" => a.ms = val().parse().expect("--ms"),
            "--reps" => a.reps = val().parse().expect("--reps"),
            "--ws" => a.ws = true,
            "--native" => a.native = true,
            "--wait-go" => a.wait_go = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// create + trusted_cert + open, through the test kit's LL-client stand-in (register on
/// CONNECTED, poll after ASSIGNING, close inside the data callback); the first `dowork` starts
/// the connection.
fn open_device(a: &Args, regid: String, key: String) -> Ll {
    let proto = if a.ws { Proto::Ws } else { Proto::Mqtt };
    let mut d = Device::new(
        proto,
        a.uri.as_str(),
        &regid,
        Auth::SymmetricKey { key_b64: key },
    )
    .trace(false);
    d.scope = a.scope.clone();
    if !a.native {
        d = d.trusting(&a.ca);
    }
    let ll = Ll::create(&d);
    assert_eq!(ll.open(), 0, "open failed");
    ll
}

fn destroy(d: &Ll) {
    d.close();
    d.destroy();
}

fn assigning_seen(d: &Ll) -> bool {
    d.outcome()
        .statuses
        .iter()
        .any(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS::PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING)
}

fn device_key(a: &Args, regid: &str) -> String {
    dps_emulator::sas::derive_device_key(&a.group_key, regid)
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the struct.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut r);
        r
    }
}

fn cpu_s(r: &libc::rusage) -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

/// (threads, VmRSS kB) of this process.
fn proc_status() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// CPU seconds of this process's threads: (the calling thread, the I/O runtime's threads).
fn thread_cpu() -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let me = std::process::id().to_string();
    let (mut main, mut io) = (0.0, 0.0);
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let t = (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick;
        if entry.file_name().to_string_lossy() == me {
            main += t;
        } else if comm.starts_with("prov-mqtt-io") {
            io += t;
        }
    }
    (main, io)
}

/// The I/O thread's id, (voluntary, involuntary) context switches and CPU ticks.
fn io_thread() -> Option<(String, u64, u64, u64)> {
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "prov-mqtt-io" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        return Some((
            entry.file_name().to_string_lossy().into_owned(),
            field("voluntary_ctxt_switches:"),
            field("nonvoluntary_ctxt_switches:"),
            ticks,
        ));
    }
    None
}

/// Counts the I/O thread's wake-ups over `a.ms` while `step` runs every millisecond.
fn wake_window(a: &Args, phase: &str, mut step: impl FnMut()) {
    let Some((tid, ..)) = io_thread() else {
        panic!("no prov-mqtt-io thread");
    };
    println!("{{\"mode\":\"wakeups-ready\",\"phase\":\"{phase}\",\"io_tid\":{tid}}}");
    if a.wait_go {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
    }
    let (_, v0, n0, t0) = io_thread().unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(a.ms) {
        step();
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, v1, n1, t1) = io_thread().unwrap();
    println!(
        "{{\"mode\":\"wakeups\",\"phase\":\"{phase}\",\"n\":{},\"ws\":{},\"window_s\":{:.3},\"voluntary\":{},\"involuntary\":{},\"cpu_ticks\":{}}}",
        a.n,
        a.ws,
        start.elapsed().as_secs_f64(),
        v1 - v0,
        n1 - n0,
        t1 - t0
    );
    if a.wait_go {
        // the script stops strace first: what follows (destroy) is not the window's
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
    }
}

/// N registrations waiting out a retry-after, then none: the I/O thread's wake-ups in each.
fn wakeups(a: &Args) {
    raise_nofile();
    let devices: Vec<Ll> = (0..a.n)
        .map(|i| {
            let regid = format!("wake-{i}");
            let key = device_key(a, &regid);
            open_device(a, regid, key)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while devices.iter().any(|d| !assigning_seen(d)) && Instant::now() < deadline {
        let now = Instant::now();
        for d in &devices {
            d.step(now);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let waiting = devices.iter().filter(|d| assigning_seen(d)).count();
    assert_eq!(waiting, devices.len(), "not every registration got its 202");
    // as the LL client does while it waits: dowork on every handle, every millisecond
    wake_window(a, "waiting", || {
        let now = Instant::now();
        for d in &devices {
            d.step(now);
        }
    });
    let polled = devices
        .iter()
        .filter(|d| d.outcome().result.is_some())
        .count();
    assert_eq!(polled, 0, "the retry-after must outlast the window");
    for d in &devices {
        destroy(d);
    }
    drop(devices);
    // the graceful closes and the resolver threads are done well before this
    std::thread::sleep(Duration::from_secs(2));
    wake_window(a, "idle", || {});
}

fn raise_nofile() {
    // SAFETY: setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Time from `open` / the first `dowork` to the TCP accept on a local listener.
fn setup(a: &Args) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let _ = tx.send(Instant::now());
            drop(s);
        }
    });
    let a = Args {
        uri: format!(
            "{}:{port}",
            if a.uri.is_empty() {
                "localhost"
            } else {
                &a.uri
            }
        ),
        ca: a.ca.clone(),
        reps: a.reps,
        native: a.native,
        scope: a.scope.clone(),
        ..Args::default()
    };
    for rep in 0..a.reps.max(1) {
        let r0 = rusage();
        let t0 = Instant::now();
        let d = open_device(&a, format!("setup-{rep}"), "a2V5".into());
        let opened = Instant::now();
        d.dowork();
        let first_dowork_returned = Instant::now();
        let accepted = rx.recv_timeout(Duration::from_secs(10)).expect("no accept");
        // CPU of the whole process (caller's thread, I/O thread, resolver) from create to here
        let cpu = cpu_s(&rusage()) - cpu_s(&r0);
        println!(
            "{{\"mode\":\"setup\",\"rep\":{rep},\"native\":{},\"cpu_ms\":{:.4},\"create_to_open_ms\":{:.4},\"dowork_ms\":{:.4},\"first_dowork_to_accept_ms\":{:.4},\"create_to_accept_ms\":{:.4}}}",
            a.native,
            cpu * 1e3,
            ms(opened - t0),
            ms(first_dowork_returned - opened),
            ms(accepted - opened),
            ms(accepted - t0)
        );
        destroy(&d);
    }
    if a.native {
        // the platform store is read in the background: let it finish (for strace's file count)
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `dowork` in a loop while a registration waits for its retry-after.
fn idle(a: &Args) {
    let d = open_device(a, "idle-dev".into(), device_key(a, "idle-dev"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !assigning_seen(&d) && Instant::now() < deadline {
        d.step(Instant::now());
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(assigning_seen(&d), "no ASSIGNING status");
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    println!("{{\"mode\":\"idle-ready\",\"tid\":{tid}}}");
    if a.wait_go {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
    }
    // the C call itself, without the driver around it
    let (dowork, handle) = (d.table().prov_transport_dowork.unwrap(), d.handle());
    let budget = Duration::from_millis(a.ms);
    // markers for the syscall count: only the loop lies between the two getppid calls
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() };
    let start = Instant::now();
    let mut calls: u64 = 0;
    loop {
        for _ in 0..256 {
            // SAFETY: the handle is alive.
            unsafe { dowork(handle) };
        }
        calls += 256;
        if start.elapsed() >= budget {
            break;
        }
    }
    let elapsed = start.elapsed();
    // SAFETY: as above.
    unsafe { libc::getppid() };
    let still_waiting = d.outcome().result.is_none();
    println!(
        "{{\"mode\":\"idle\",\"calls\":{calls},\"ns_per_call\":{:.1},\"still_waiting\":{still_waiting}}}",
        elapsed.as_nanos() as f64 / calls as f64
    );
    // finish the registration
    while d.outcome().result.is_none() && Instant::now() < deadline {
        d.step(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    destroy(&d);
}

/// N concurrent registrations on one thread, against one emulator.
fn fleet(a: &Args) {
    // SAFETY: setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let r0 = rusage();
    let (threads0, rss0) = proc_status();
    let t0 = Instant::now();
    let devices: Vec<Ll> = (0..a.n)
        .map(|i| {
            let regid = format!("fleet-{i}");
            let key = device_key(a, &regid);
            open_device(a, regid, key)
        })
        .collect();
    let opened = Instant::now();
    let mut max_threads = threads0;
    let mut max_rss = rss0;
    let mut remaining = devices.len();
    let deadline = t0 + Duration::from_secs(600);
    let mut sweeps = 0u64;
    while remaining > 0 && Instant::now() < deadline {
        let sweep = Instant::now();
        remaining = 0;
        for d in &devices {
            if d.outcome().result.is_none() {
                d.step(sweep);
                remaining += usize::from(d.outcome().result.is_none());
            }
        }
        sweeps += 1;
        if sweeps % 16 == 0 {
            let (t, r) = proc_status();
            max_threads = max_threads.max(t);
            max_rss = max_rss.max(r);
        }
        let took = sweep.elapsed();
        if took < Duration::from_millis(1) {
            std::thread::sleep(Duration::from_millis(1) - took);
        }
    }
    let total = t0.elapsed();
    let (t, r) = proc_status();
    max_threads = max_threads.max(t);
    max_rss = max_rss.max(r);
    let r1 = rusage();
    let ok = devices
        .iter()
        .filter(|d| {
            d.outcome().result
                == Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK)
        })
        .count();
    let mut done_ms: Vec<f64> = devices
        .iter()
        .filter_map(|d| d.outcome().done_at.map(|x| ms(x - t0)))
        .collect();
    done_ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let pct = |p: f64| {
        done_ms
            .get(((done_ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let (main_cpu, io_cpu) = thread_cpu();
    for d in &devices {
        destroy(d);
    }
    println!(
        "{{\"mode\":\"fleet\",\"n\":{},\"ws\":{},\"ok\":{ok},\"main_cpu_s\":{main_cpu:.2},\"io_cpu_s\":{io_cpu:.2},\"total_s\":{:.3},\"open_all_ms\":{:.1},\"done_p50_ms\":{:.1},\"done_p99_ms\":{:.1},\"cpu_s\":{:.3},\"rss0_kb\":{rss0},\"max_rss_kb\":{},\"vm_hwm_kb\":{},\"threads0\":{threads0},\"max_threads\":{max_threads}}}",
        a.n,
        a.ws,
        total.as_secs_f64(),
        ms(opened - t0),
        pct(0.5),
        pct(0.99),
        cpu_s(&r1) - cpu_s(&r0),
        max_rss,
        r1.ru_maxrss,
    );
}

fn main() {
    let a = args();
    match a.mode.as_str() {
        "setup" => setup(&a),
        "idle" => idle(&a),
        "fleet" => fleet(&a),
        "wakeups" => wakeups(&a),
        other => {
            eprintln!("usage: bench setup|idle|fleet|wakeups ... (got {other:?})");
            std::process::exit(2);
        }
    }
}
