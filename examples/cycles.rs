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

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::io::{BufRead, BufReader};
use std::os::raw::{c_char, c_uchar, c_void};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use prov_mqtt_transport::ffi::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const SCOPE: &str = "0ne00000000";
const API: &str = "2021-06-01";
const X509_ID: &str = "cycles-x509";
const SAS_ID: &str = "cycles-sas";
const KEY: &str = "Y3ljbGVzLWtleS1mb3ItdGhlLWxlYWstY2hlY2stMDE=";

struct Rec {
    t: *const PROV_DEVICE_TRANSPORT_PROVIDER,
    h: PROV_DEVICE_TRANSPORT_HANDLE,
    regid: &'static str,
    poll: bool,
    register: bool,
    result: Option<PROV_DEVICE_TRANSPORT_RESULT>,
    hub: Option<String>,
}

fn rec<'a>(p: *mut c_void) -> &'a RefCell<Rec> {
    // SAFETY: every context is the cycle's live RefCell<Rec>.
    unsafe { &*(p as *const RefCell<Rec>) }
}

fn strdup(s: &str) -> *mut c_char {
    let c = CString::new(s).unwrap();
    // SAFETY: malloc'd copy; the transport frees it.
    unsafe { libc::strdup(c.as_ptr()) }
}

unsafe extern "C" fn on_data(
    result: PROV_DEVICE_TRANSPORT_RESULT,
    _key: BUFFER_HANDLE,
    hub: *const c_char,
    _device: *const c_char,
    user: *mut c_void,
) {
    let r = rec(user);
    let (t, h) = {
        let mut b = r.borrow_mut();
        b.result = Some(result);
        b.hub = (!hub.is_null()).then(|| {
            // SAFETY: non-NULL, a NUL-terminated string valid during the call.
            unsafe { CStr::from_ptr(hub) }
                .to_string_lossy()
                .into_owned()
        });
        (b.t, b.h)
    };
    // the LL client closes from inside this callback
    // SAFETY: the live handle of this cycle.
    unsafe { ((*t).prov_transport_close.unwrap())(h) };
}

unsafe extern "C" fn on_status(status: PROV_DEVICE_TRANSPORT_STATUS, _: u32, user: *mut c_void) {
    let mut b = rec(user).borrow_mut();
    match status {
        PROV_DEVICE_TRANSPORT_STATUS_CONNECTED => b.register = true,
        // no need to honour the retry interval here: poll at once
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING => b.poll = true,
        _ => {}
    }
}

unsafe extern "C" fn on_challenge(
    _: *const c_uchar,
    _: usize,
    _: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    let regid = rec(user).borrow().regid;
    let expiry = dps_emulator::sas::now_unix() + 3600;
    strdup(&dps_emulator::sas::token(SCOPE, regid, KEY, expiry))
}

unsafe extern "C" fn on_create(
    _: *const c_char,
    _: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    strdup(&format!(
        r#"{{"registrationId":"{}","payload":{{"cycle":true}}}}"#,
        rec(user).borrow().regid
    ))
}

/// The LL client's parse, reduced to assigning and assigned; malloc'd as the SDK's.
unsafe extern "C" fn on_parse(json: *const c_char, _: *mut c_void) -> *mut PROV_JSON_INFO {
    // SAFETY: the transport passes a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(json) }.to_string_lossy();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return ptr::null_mut();
    };
    let (status, op, hub, dev) = match v["status"].as_str() {
        Some("assigning") => (
            PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
            strdup(v["operationId"].as_str().unwrap_or("")),
            ptr::null_mut(),
            ptr::null_mut(),
        ),
        Some("assigned") => (
            PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
            ptr::null_mut(),
            strdup(v["registrationState"]["assignedHub"].as_str().unwrap_or("")),
            strdup(v["registrationState"]["deviceId"].as_str().unwrap_or("")),
        ),
        _ => return ptr::null_mut(),
    };
    // SAFETY: a malloc'd record, every field written; the transport frees it.
    unsafe {
        let info = libc::malloc(std::mem::size_of::<PROV_JSON_INFO>()) as *mut PROV_JSON_INFO;
        info.write(PROV_JSON_INFO {
            prov_status: status,
            operation_id: op,
            authorization_key: ptr::null_mut(),
            key_name: ptr::null_mut(),
            iothub_uri: hub,
            device_id: dev,
        });
        info
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

struct Emulator {
    child: Child,
    mqtt: String,
    ws: String,
    _dir: PathGuard,
}

struct PathGuard(std::path::PathBuf);

impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator(pki: &Pki) -> Emulator {
    let exe = std::env::var_os("DPS_EMULATOR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let me = std::env::current_exe().unwrap();
            me.parent().unwrap().parent().unwrap().join("dps-emulator")
        });
    let dir = std::env::temp_dir().join(format!("cycles-pki-{}", std::process::id()));
    pki.write_to(&dir).unwrap();
    let mut child = Command::new(&exe)
        .args(["serve", "--certs"])
        .arg(&dir)
        .args(["--mqtt-port", "0", "--ws-port", "0", "--polls", "0"])
        .args(["--scope", SCOPE])
        .arg("--symmetric-key")
        .arg(format!("{SAS_ID}={KEY}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("dps-emulator listening")))
        .expect("the emulator says where it listens");
    let field = |name: &str| {
        listening
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap()
            .replace("127.0.0.1", "localhost")
    };
    Emulator {
        mqtt: field("mqtt="),
        ws: field("ws="),
        child,
        _dir: PathGuard(dir),
    }
}

/// (VmRSS kB, open descriptors, threads) of this process.
fn sample() -> (u64, usize, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    (field("VmRSS:"), fds, field("Threads:"))
}

/// One create → open → register → close → destroy cycle; true when assigned.
fn cycle(emu: &Emulator, pki: &Pki, i: usize) -> bool {
    let ws = i % 2 == 1;
    let sas = (i / 2) % 2 == 1;
    // SAFETY: the entry points return static tables.
    let t = unsafe {
        &*if ws {
            Prov_Device_MQTT_WS_Protocol()
        } else {
            Prov_Device_MQTT_Protocol()
        }
    };
    let regid = if sas { SAS_ID } else { X509_ID };
    let r = Box::new(RefCell::new(Rec {
        t,
        h: ptr::null_mut(),
        regid,
        poll: false,
        register: false,
        result: None,
        hub: None,
    }));
    let ctx = &*r as *const RefCell<Rec> as *mut c_void;
    let uri = c(if ws { &emu.ws } else { &emu.mqtt });
    let (scope, api, id) = (c(SCOPE), c(API), c(regid));
    // SAFETY: valid strings and callbacks; the Rec outlives the handle.
    unsafe {
        let h = (t.prov_transport_create.unwrap())(
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(if sas { 2 } else { 1 }),
            scope.as_ptr(),
            api.as_ptr(),
            None,
            ptr::null_mut(),
        );
        assert!(!h.is_null());
        r.borrow_mut().h = h;
        assert_eq!(
            (t.prov_transport_trusted_cert.unwrap())(h, c(&pki.root_ca_pem).as_ptr()),
            0
        );
        if !sas {
            let d = pki.device(X509_ID).unwrap();
            assert_eq!(
                (t.prov_transport_x509_cert.unwrap())(
                    h,
                    c(&d.cert_chain_pem).as_ptr(),
                    c(&d.key_pem).as_ptr()
                ),
                0
            );
        }
        let timeout: u32 = 10;
        assert_eq!(
            (t.prov_transport_set_option.unwrap())(
                h,
                c("reply_timeout_secs").as_ptr(),
                &timeout as *const u32 as *const c_void
            ),
            0
        );
        assert_eq!(
            (t.prov_transport_open.unwrap())(
                h,
                id.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(on_data),
                ctx,
                Some(on_status),
                ctx,
                Some(on_challenge),
                ctx
            ),
            0
        );
        let started = Instant::now();
        while r.borrow().result.is_none() && started.elapsed() < Duration::from_secs(30) {
            (t.prov_transport_dowork.unwrap())(h);
            let (register, poll) = {
                let mut b = r.borrow_mut();
                (std::mem::take(&mut b.register), std::mem::take(&mut b.poll))
            };
            if register {
                assert_eq!(
                    (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create), ctx),
                    0
                );
            }
            if poll {
                assert_eq!((t.prov_transport_get_op_status.unwrap())(h), 0);
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        (t.prov_transport_destroy.unwrap())(h);
    }
    let b = r.borrow();
    b.result == Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK)
        && b.hub.as_deref() == Some("emulated-hub.azure-devices.net")
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
    prov_mqtt_transport::log::set_sink(|level, line| {
        if level == prov_mqtt_transport::log::Level::Error {
            eprintln!("{line}");
        }
    });
    let pki = Pki::generate(&[X509_ID]);
    let emu = start_emulator(&pki);
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
