//! Hostile input from the caller, through the real C tables of both transports (MQTT and WSS):
//! NULL for every pointer parameter of every slot, calls out of order (register before open,
//! dowork and get_op_status after close, close before open, double close, open again after a
//! close, dowork / close / destroy from inside callbacks), wrong option names and value types,
//! invalid PEM (which must leave the previous value in place), and 1 MB strings. Complements
//! the argument checks of src/ffi/tests.rs (those run on one table each; these run on both and
//! go on to a real registration against the emulator where a state change must be proven).

mod common;

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_uchar, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use dps_emulator::{Config, Emulator};
use prov_mqtt_transport::ffi::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const X509: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(1);
const SYMM: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(2);
const SCOPE: &str = common::SCOPE;

type Table = &'static PROV_DEVICE_TRANSPORT_PROVIDER;

fn tables() -> [(&'static str, Table); 2] {
    // SAFETY: the entry points return static tables.
    unsafe {
        [
            ("MQTT", &*Prov_Device_MQTT_Protocol()),
            ("WSS", &*Prov_Device_MQTT_WS_Protocol()),
        ]
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// What to do from inside a callback.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Then {
    Nothing,
    /// register from the CONNECTED status callback (the LL client's way)
    Register,
    Close,
    Destroy,
    /// call dowork again, re-entrantly
    DoWork,
}

/// What the callbacks saw, and what they should do. Passed as every context.
struct Rec {
    t: Table,
    h: PROV_DEVICE_TRANSPORT_HANDLE,
    regid: String,
    on_connected: Then,
    on_data: Then,
    statuses: Vec<(PROV_DEVICE_TRANSPORT_STATUS, u32)>,
    data: Vec<PROV_DEVICE_TRANSPORT_RESULT>,
    hub: Option<String>,
    errors: Vec<PROV_DEVICE_TRANSPORT_ERROR>,
    next_poll: Option<Instant>,
    destroyed: bool,
    /// callbacks after destroy (must stay 0)
    late: usize,
    reentered: usize,
}

fn rec<'a>(p: *mut c_void) -> &'a RefCell<Rec> {
    // SAFETY: every context is the test's live RefCell<Rec>.
    unsafe { &*(p as *const RefCell<Rec>) }
}

unsafe fn act(r: &RefCell<Rec>, then: Then) {
    let (t, h) = {
        let b = r.borrow();
        (b.t, b.h)
    };
    let ctx = r as *const RefCell<Rec> as *mut c_void;
    // SAFETY: `h` is NULL or this record's handle; `ctx` is the live record; re-entering from a callback is allowed.
    unsafe {
        match then {
            Then::Nothing => {}
            Then::Register => assert_eq!(
                (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create), ctx),
                0
            ),
            Then::Close => assert_eq!((t.prov_transport_close.unwrap())(h), 0),
            Then::Destroy => {
                r.borrow_mut().destroyed = true;
                (t.prov_transport_destroy.unwrap())(h)
            }
            Then::DoWork => {
                r.borrow_mut().reentered += 1;
                (t.prov_transport_dowork.unwrap())(h)
            }
        }
    }
}

unsafe extern "C" fn on_data(
    result: PROV_DEVICE_TRANSPORT_RESULT,
    _key: BUFFER_HANDLE,
    hub: *const c_char,
    _device: *const c_char,
    user: *mut c_void,
) {
    let r = rec(user);
    let then = {
        let mut b = r.borrow_mut();
        if b.destroyed {
            b.late += 1;
        }
        b.data.push(result);
        b.hub = (!hub.is_null()).then(|| {
            // SAFETY: non-NULL, a NUL-terminated string valid during the callback.
            unsafe { CStr::from_ptr(hub) }
                .to_string_lossy()
                .into_owned()
        });
        b.on_data
    };
    // SAFETY: `r` is the live record the transport handed back.
    unsafe { act(r, then) };
}

unsafe extern "C" fn on_status(
    status: PROV_DEVICE_TRANSPORT_STATUS,
    retry: u32,
    user: *mut c_void,
) {
    let r = rec(user);
    let then = {
        let mut b = r.borrow_mut();
        if b.destroyed {
            b.late += 1;
        }
        b.statuses.push((status, retry));
        if status == PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING {
            b.next_poll = Some(Instant::now() + Duration::from_secs(u64::from(retry)));
        }
        match status {
            PROV_DEVICE_TRANSPORT_STATUS_CONNECTED => b.on_connected,
            _ => Then::Nothing,
        }
    };
    // SAFETY: `r` is the live record the transport handed back.
    unsafe { act(r, then) };
}

unsafe extern "C" fn on_error(error: PROV_DEVICE_TRANSPORT_ERROR, user: *mut c_void) {
    if !user.is_null() {
        rec(user).borrow_mut().errors.push(error);
    }
}

unsafe extern "C" fn on_challenge(
    _: *const c_uchar,
    _: usize,
    _: *const c_char,
    _: *mut c_void,
) -> *mut c_char {
    ptr::null_mut()
}

unsafe extern "C" fn on_create(
    _: *const c_char,
    _: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    let body = serde_json::json!({ "registrationId": rec(user).borrow().regid }).to_string();
    // SAFETY: `c(&body)` is a NUL-terminated string that outlives the strdup.
    unsafe { libc::strdup(c(&body).as_ptr()) }
}

/// The LL client's parse, reduced: assigning (with operation id) and assigned.
unsafe extern "C" fn on_parse(json: *const c_char, _: *mut c_void) -> *mut PROV_JSON_INFO {
    // SAFETY: the transport passes a NUL-terminated document valid during the call.
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap();
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return ptr::null_mut(),
    };
    let dup =
        // SAFETY: `c(s)` is a NUL-terminated string that outlives the strdup.
        |s: Option<&str>| s.map_or(ptr::null_mut(), |s| unsafe { libc::strdup(c(s).as_ptr()) });
    let (status, op, hub) = match v["status"].as_str() {
        Some("assigning") => (
            PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
            dup(v["operationId"].as_str()),
            ptr::null_mut(),
        ),
        Some("assigned") => (
            PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
            ptr::null_mut(),
            dup(v["registrationState"]["assignedHub"].as_str()),
        ),
        _ => return ptr::null_mut(),
    };
    // SAFETY: a malloc of the record's size; the write sets every field.
    unsafe {
        let info = libc::malloc(std::mem::size_of::<PROV_JSON_INFO>()) as *mut PROV_JSON_INFO;
        info.write(PROV_JSON_INFO {
            prov_status: status,
            operation_id: op,
            authorization_key: ptr::null_mut(),
            key_name: ptr::null_mut(),
            iothub_uri: hub,
            device_id: ptr::null_mut(),
        });
        info
    }
}

fn emulator(devices: &[&str]) -> Emulator {
    let mut cfg = Config::ephemeral().with_pki(Pki::generate(devices));
    cfg.log_to_stderr = false;
    Emulator::start(cfg).expect("emulator starts")
}

fn uri(emu: &Emulator, name: &str) -> String {
    let port = match name {
        "MQTT" => emu.mqtt_addr().port(),
        _ => emu.ws_addr().port(),
    };
    format!("localhost:{port}")
}

/// create + trusted CA + the device's certificate; the Rec is the context of every callback.
fn x509_handle(emu: &Emulator, name: &str, t: Table, regid: &str) -> Box<RefCell<Rec>> {
    let r = Box::new(RefCell::new(Rec {
        t,
        h: ptr::null_mut(),
        regid: regid.into(),
        on_connected: Then::Register,
        on_data: Then::Nothing,
        statuses: vec![],
        data: vec![],
        hub: None,
        errors: vec![],
        next_poll: None,
        destroyed: false,
        late: 0,
        reentered: 0,
    }));
    let ctx = &*r as *const RefCell<Rec> as *mut c_void;
    let (u, s, a) = (c(&uri(emu, name)), c(SCOPE), c(common::API_VERSION));
    let d = emu.pki().device(regid).unwrap();
    // SAFETY: the slots get valid C strings, this file's callbacks and `ctx`, the record that outlives the handle.
    unsafe {
        let h = (t.prov_transport_create.unwrap())(
            u.as_ptr(),
            X509,
            s.as_ptr(),
            a.as_ptr(),
            Some(on_error),
            ctx,
        );
        assert!(!h.is_null());
        r.borrow_mut().h = h;
        assert_eq!(
            (t.prov_transport_trusted_cert.unwrap())(h, c(&emu.pki().root_ca_pem).as_ptr()),
            0
        );
        assert_eq!(
            (t.prov_transport_x509_cert.unwrap())(
                h,
                c(&d.cert_chain_pem).as_ptr(),
                c(&d.key_pem).as_ptr()
            ),
            0
        );
        let budget: u32 = 1;
        assert_eq!(
            (t.prov_transport_set_option.unwrap())(
                h,
                c("retry_max_attempts").as_ptr(),
                &budget as *const u32 as *const c_void
            ),
            0
        );
    }
    r
}

unsafe fn open(r: &RefCell<Rec>, regid: &str) -> i32 {
    let (t, h) = (r.borrow().t, r.borrow().h);
    let ctx = r as *const RefCell<Rec> as *mut c_void;
    let id = c(regid);
    // SAFETY: `h` is this record's live handle; `id` and the callbacks are valid; `ctx` outlives the handle.
    unsafe {
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
            ctx,
        )
    }
}

/// dowork until a data callback (or the handle is destroyed, or `limit`), polling after
/// ASSIGNING as the LL client does.
unsafe fn pump(r: &RefCell<Rec>, limit: Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        let (t, h, done, poll) = {
            let b = r.borrow();
            (b.t, b.h, !b.data.is_empty() || b.destroyed, b.next_poll)
        };
        if done {
            return;
        }
        // SAFETY: `h` is this record's handle (or NULL once destroyed: a no-op).
        unsafe { (t.prov_transport_dowork.unwrap())(h) };
        if poll.is_some_and(|at| Instant::now() >= at) {
            r.borrow_mut().next_poll = None;
            // SAFETY: `h` is this record's live handle.
            assert_eq!(unsafe { (t.prov_transport_get_op_status.unwrap())(h) }, 0);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

unsafe fn dowork_for(r: &RefCell<Rec>, d: Duration) {
    let started = Instant::now();
    while started.elapsed() < d {
        let (t, h) = (r.borrow().t, r.borrow().h);
        // SAFETY: `h` is this record's handle (or NULL once destroyed: a no-op).
        unsafe { (t.prov_transport_dowork.unwrap())(h) };
        std::thread::sleep(Duration::from_millis(2));
    }
}

const LIMIT: Duration = Duration::from_secs(20);

// ---- NULL for every pointer parameter, both tables --------------------------------------

#[test]
fn null_for_every_pointer_parameter_of_every_slot_of_both_tables() {
    common::capture_logs();
    for (name, t) in tables() {
        let (uri, scope, api, regid) = (c("localhost:1"), c("scope"), c("v"), c("r"));
        let n = ptr::null_mut::<c_void>();
        // SAFETY: NULL or valid C strings and handles from `create`: every bad argument must be refused before use.
        unsafe {
            // create: each string NULL
            let create = t.prov_transport_create.unwrap();
            for (u, s, a) in [
                (ptr::null(), scope.as_ptr(), api.as_ptr()),
                (uri.as_ptr(), ptr::null(), api.as_ptr()),
                (uri.as_ptr(), scope.as_ptr(), ptr::null()),
                (ptr::null(), ptr::null(), ptr::null()),
            ] {
                assert!(create(u, X509, s, a, None, n).is_null(), "{name}");
            }
            // a live handle for the rest; NULL contexts and a NULL error callback are allowed
            let h = create(uri.as_ptr(), SYMM, scope.as_ptr(), api.as_ptr(), None, n);
            assert!(!h.is_null(), "{name}");
            let open = t.prov_transport_open.unwrap();
            let cases = [
                (
                    ptr::null(),
                    Some(on_data as _),
                    Some(on_status as _),
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    None,
                    Some(on_status as _),
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    Some(on_data as _),
                    None,
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    Some(on_data as _),
                    Some(on_status as _),
                    None,
                ),
                (ptr::null(), None, None, None),
            ];
            for (i, (id, data, status, challenge)) in cases.into_iter().enumerate() {
                let rc = open(h, id, n.cast(), n.cast(), data, n, status, n, challenge, n);
                assert_ne!(rc, 0, "{name} open case {i}");
            }
            let register = t.prov_transport_register.unwrap();
            assert_ne!(register(h, None, Some(on_create), n), 0, "{name}");
            assert_ne!(register(h, Some(on_parse), None, n), 0, "{name}");
            assert_ne!(register(h, None, None, n), 0, "{name}");
            let x509 = t.prov_transport_x509_cert.unwrap();
            assert_ne!(x509(h, ptr::null(), regid.as_ptr()), 0, "{name}");
            assert_ne!(x509(h, regid.as_ptr(), ptr::null()), 0, "{name}");
            assert_ne!(x509(h, ptr::null(), ptr::null()), 0, "{name}");
            assert_ne!((t.prov_transport_trusted_cert.unwrap())(h, ptr::null()), 0);
            let proxy = t.prov_transport_set_proxy.unwrap();
            assert_ne!(proxy(h, ptr::null()), 0, "{name}");
            for (host, user, pass) in [
                (ptr::null(), ptr::null(), ptr::null()),
                (regid.as_ptr(), regid.as_ptr(), ptr::null()),
                (regid.as_ptr(), ptr::null(), regid.as_ptr()),
                (ptr::null(), regid.as_ptr(), regid.as_ptr()),
            ] {
                let o = HTTP_PROXY_OPTIONS {
                    host_address: host,
                    port: 8080,
                    username: user,
                    password: pass,
                };
                assert_ne!(proxy(h, &o), 0, "{name}");
            }
            let opt = t.prov_transport_set_option.unwrap();
            let v: u32 = 5;
            assert_ne!(opt(h, ptr::null(), &v as *const u32 as *const c_void), 0);
            for (option, _, _) in prov_mqtt_transport::options::OPTIONS {
                assert_ne!(
                    opt(h, c(option).as_ptr(), ptr::null()),
                    0,
                    "{name} {option}"
                );
            }
            assert_ne!(opt(h, ptr::null(), ptr::null()), 0);
            // NULL proxy host through proxy_data
            let o = HTTP_PROXY_OPTIONS {
                host_address: ptr::null(),
                port: 8080,
                username: ptr::null(),
                password: ptr::null(),
            };
            assert_ne!(
                opt(h, c("proxy_data").as_ptr(), &o as *const _ as *const c_void),
                0
            );
            // none of that changed anything: a correct open still works, once
            let ok = open(
                h,
                regid.as_ptr(),
                n.cast(),
                n.cast(),
                Some(on_data),
                n,
                Some(on_status),
                n,
                Some(on_challenge),
                n,
            );
            assert_eq!(ok, 0, "{name}");
            // NULL handle on every slot of this table
            (t.prov_transport_dowork.unwrap())(ptr::null_mut());
            (t.prov_transport_destroy.unwrap())(ptr::null_mut());
            assert_ne!((t.prov_transport_close.unwrap())(ptr::null_mut()), 0);
            assert_ne!(
                (t.prov_transport_get_op_status.unwrap())(ptr::null_mut()),
                0
            );
            assert_ne!(
                (t.prov_transport_set_trace.unwrap())(ptr::null_mut(), true),
                0
            );
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}

// ---- calls out of order ----------------------------------------------------------------

#[test]
fn calls_out_of_order_are_refused_or_harmless() {
    common::capture_logs();
    let emu = emulator(&["order-mqtt", "order-wss"]);
    for (name, t) in tables() {
        let regid = format!("order-{}", name.to_lowercase());
        let r = x509_handle(&emu, name, t, &regid);
        let (h, ctx) = (r.borrow().h, &*r as *const RefCell<Rec> as *mut c_void);
        // SAFETY: `h` is the record's live handle until its destroy; `ctx` outlives it.
        unsafe {
            // before open: close and dowork are harmless, polling is refused
            assert_eq!(
                (t.prov_transport_close.unwrap())(h),
                0,
                "{name} close before open"
            );
            (t.prov_transport_dowork.unwrap())(h);
            assert_ne!((t.prov_transport_get_op_status.unwrap())(h), 0);
            // register before open is accepted (the SDK allows it) and goes out after open
            assert_eq!(
                (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create), ctx),
                0
            );
            dowork_for(&r, Duration::from_millis(200));
            assert!(
                r.borrow().statuses.is_empty(),
                "nothing happens before open"
            );
            assert!(r.borrow().data.is_empty());
            r.borrow_mut().on_connected = Then::Nothing; // already registered
            assert_eq!(open(&r, &regid), 0);
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            assert_eq!(
                r.borrow().hub.as_deref(),
                Some("emulated-hub.azure-devices.net")
            );
            // after the outcome: register refused while the operation is remembered (poll it or
            // close), polling is allowed
            assert_ne!(
                (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create), ctx),
                0,
                "{name}: an operation id was received"
            );
            // close, then dowork, double close, poll after close
            assert_eq!((t.prov_transport_close.unwrap())(h), 0);
            let before = (r.borrow().statuses.len(), r.borrow().data.len());
            dowork_for(&r, Duration::from_millis(200));
            assert_eq!((t.prov_transport_close.unwrap())(h), 0, "double close");
            assert_ne!((t.prov_transport_get_op_status.unwrap())(h), 0, "{name}");
            dowork_for(&r, Duration::from_millis(100));
            assert_eq!(
                (r.borrow().statuses.len(), r.borrow().data.len()),
                before,
                "{name}: no callback after close"
            );
            // open again on the same handle: a second registration works (the operation id
            // was forgotten by close)
            r.borrow_mut().data.clear();
            r.borrow_mut().on_connected = Then::Register;
            assert_eq!(open(&r, &regid), 0);
            assert_ne!(open(&r, &regid), 0, "{name}: open twice");
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}

#[test]
fn destroy_close_and_dowork_from_inside_callbacks() {
    common::capture_logs();
    let emu = emulator(&[
        "cb-destroy-mqtt",
        "cb-destroy-wss",
        "cb-close-mqtt",
        "cb-close-wss",
        "cb-dowork-mqtt",
        "cb-dowork-wss",
        "cb-data-destroy-mqtt",
        "cb-data-destroy-wss",
    ]);
    for (name, t) in tables() {
        let lower = name.to_lowercase();
        // SAFETY: each handle is live until its destroy (which the callbacks may do); contexts outlive them.
        unsafe {
            // destroy inside the CONNECTED status callback: nothing afterwards, no crash
            let regid = format!("cb-destroy-{lower}");
            let r = x509_handle(&emu, name, t, &regid);
            r.borrow_mut().on_connected = Then::Destroy;
            assert_eq!(open(&r, &regid), 0);
            pump(&r, LIMIT);
            assert!(r.borrow().destroyed, "{name}: CONNECTED arrived");
            assert_eq!(r.borrow().late, 0);
            assert!(r.borrow().data.is_empty());

            // close inside CONNECTED: no further callback; the handle can be opened again
            let regid = format!("cb-close-{lower}");
            let r = x509_handle(&emu, name, t, &regid);
            r.borrow_mut().on_connected = Then::Close;
            assert_eq!(open(&r, &regid), 0);
            dowork_for(&r, Duration::from_secs(2));
            assert_eq!(
                r.borrow().statuses,
                vec![(PROV_DEVICE_TRANSPORT_STATUS_CONNECTED, 1)],
                "{name}"
            );
            assert!(
                r.borrow().data.is_empty(),
                "{name}: no callback after close"
            );
            r.borrow_mut().on_connected = Then::Register;
            assert_eq!(open(&r, &regid), 0);
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            (t.prov_transport_destroy.unwrap())(r.borrow().h);

            // dowork re-entered from inside CONNECTED: no deadlock, the registration still
            // completes with one data callback
            let regid = format!("cb-dowork-{lower}");
            let r = x509_handle(&emu, name, t, &regid);
            r.borrow_mut().on_connected = Then::DoWork;
            assert_eq!(open(&r, &regid), 0);
            // the re-entrant dowork has nothing left to do; register as the LL client would
            dowork_for(&r, Duration::from_millis(500));
            assert_eq!(r.borrow().reentered, 1, "{name}");
            let ctx = &*r as *const RefCell<Rec> as *mut c_void;
            let h = r.borrow().h;
            assert_eq!(
                (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create), ctx),
                0
            );
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            (t.prov_transport_destroy.unwrap())(h);

            // destroy inside the data callback (instead of close)
            let regid = format!("cb-data-destroy-{lower}");
            let r = x509_handle(&emu, name, t, &regid);
            r.borrow_mut().on_data = Then::Destroy;
            assert_eq!(open(&r, &regid), 0);
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            assert!(r.borrow().destroyed);
            assert_eq!(r.borrow().late, 0);
        }
    }
}

// ---- options, PEM, long strings ----------------------------------------------------------

#[test]
fn wrong_option_names_and_values_are_refused_and_change_nothing() {
    common::capture_logs();
    for (name, t) in tables() {
        let (uri, scope, api) = (c("localhost:1"), c("scope"), c("v"));
        // SAFETY: `h` is live from `create` until its destroy; strings are valid for each call.
        unsafe {
            let h = (t.prov_transport_create.unwrap())(
                uri.as_ptr(),
                X509,
                scope.as_ptr(),
                api.as_ptr(),
                None,
                ptr::null_mut(),
            );
            let opt = |n: &[u8], v: *const c_void| {
                let n = CString::new(n).unwrap();
                (t.prov_transport_set_option.unwrap())(h, n.as_ptr(), v)
            };
            let u: u32 = 10;
            let pu = &u as *const u32 as *const c_void;
            // unknown names, wrong case, empty, not UTF-8, OpenSSL-only, 1 MB
            let long = vec![b'k'; 1 << 20];
            for bad in [
                &b"KeepAlive"[..],
                b"keepalive ",
                b"",
                b"\xff\xfe",
                b"Engine",
                b"CipherSuite",
                b"x509certificate",
                &long,
            ] {
                assert_ne!(
                    opt(bad, pu),
                    0,
                    "{name} {:?}",
                    String::from_utf8_lossy(&bad[..bad.len().min(20)])
                );
            }
            // numeric values out of range, as the other integer type
            for (option, value) in [
                ("reply_timeout_secs", 0u32),
                ("reply_timeout_secs", u32::MAX),
                ("retry_max_attempts", 101),
                ("retry_max_secs", 0),
                ("retry_initial_ms", 0),
                ("retry_initial_ms", 60_001),
                ("keepalive", u32::MAX), // -1 as an int
                ("keepalive", 65_536),
                ("tls_version", 10),
                ("tls_version", 11),
                ("tls_version", 14),
                ("tls_version", 0x1_0000 + 12),
            ] {
                assert_ne!(
                    opt(option.as_bytes(), &value as *const u32 as *const c_void),
                    0,
                    "{name} {option}={value}"
                );
            }
            // TrustedCerts: not PEM, not UTF-8, a key instead of a certificate, empty
            for pem in [
                &b"not a certificate"[..],
                b"\xff\xfe",
                b"",
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                b"-----BEGIN CERTIFICATE-----\nMIIB\n",
                b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
            ] {
                let v = CString::new(pem).unwrap();
                assert_ne!(opt(b"TrustedCerts", v.as_ptr().cast()), 0, "{name}");
                assert_ne!((t.prov_transport_trusted_cert.unwrap())(h, v.as_ptr()), 0);
            }
            // proxy with a bad port through proxy_data and set_proxy
            let host = c("proxy.local");
            for port in [0, -1, 65_536, i32::MIN] {
                let o = HTTP_PROXY_OPTIONS {
                    host_address: host.as_ptr(),
                    port,
                    username: ptr::null(),
                    password: ptr::null(),
                };
                assert_ne!(opt(b"proxy_data", &o as *const _ as *const c_void), 0);
                assert_ne!((t.prov_transport_set_proxy.unwrap())(h, &o), 0);
            }
            // any non-zero byte is true for a bool option
            let b: u8 = 2;
            assert_eq!(opt(b"logtrace", &b as *const u8 as *const c_void), 0);
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}

#[test]
fn invalid_pem_is_refused_and_keeps_the_previous_value() {
    common::capture_logs();
    let emu = emulator(&["pem-mqtt", "pem-wss", "pem-other"]);
    let other = emu.pki().device("pem-other").unwrap().clone();
    for (name, t) in tables() {
        let regid = format!("pem-{}", name.to_lowercase());
        let r = x509_handle(&emu, name, t, &regid); // valid CA and certificate set
        let h = r.borrow().h;
        let d = emu.pki().device(&regid).unwrap().clone();
        let cert_only = d
            .cert_chain_pem
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap()
            .to_owned()
            + "-----END CERTIFICATE-----\n";
        let truncated_key = d.key_pem[..d.key_pem.len() / 2].to_owned();
        let bad: Vec<(&str, String, String)> = vec![
            (
                "key of another device",
                d.cert_chain_pem.clone(),
                other.key_pem.clone(),
            ),
            (
                "certificate as key",
                d.cert_chain_pem.clone(),
                d.cert_chain_pem.clone(),
            ),
            ("key as certificate", d.key_pem.clone(), d.key_pem.clone()),
            ("truncated key", d.cert_chain_pem.clone(), truncated_key),
            (
                "leaf only, key of another",
                cert_only,
                other.key_pem.clone(),
            ),
            ("empty", String::new(), String::new()),
            ("garbage", "x".repeat(1 << 20), "y".repeat(1 << 20)),
        ];
        // SAFETY: `h` is live until its destroy; the strings are valid for each call.
        unsafe {
            for (what, cert, key) in bad {
                assert_ne!(
                    (t.prov_transport_x509_cert.unwrap())(h, c(&cert).as_ptr(), c(&key).as_ptr()),
                    0,
                    "{name}: {what}"
                );
            }
            for pem in ["junk", &"A".repeat(1 << 20)] {
                assert_ne!(
                    (t.prov_transport_trusted_cert.unwrap())(h, c(pem).as_ptr()),
                    0
                );
            }
            // the valid certificate, key and CA set before are still in force
            assert_eq!(open(&r, &regid), 0);
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
                "{name}"
            );
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}

#[test]
fn one_megabyte_strings_are_refused_or_end_in_a_clean_error() {
    common::capture_logs();
    let mb = "a".repeat(1 << 20);
    let emu = emulator(&["long-strings"]);
    for (name, t) in tables() {
        // SAFETY: the handles are live until their destroy; the strings are valid for each call.
        unsafe {
            let create = t.prov_transport_create.unwrap();
            // 1 MB scope, api version, registration id: refused at open with one short log
            // line (their CONNECT could not be encoded); 128 bytes is the longest accepted
            for which in ["scope", "api_version", "registration_id"] {
                let r = x509_handle(&emu, name, t, "long-strings");
                let h0 = r.borrow().h;
                (t.prov_transport_destroy.unwrap())(h0);
                let (s, a) = match which {
                    "scope" => (c(&mb), c(common::API_VERSION)),
                    "api_version" => (c(SCOPE), c(&mb)),
                    _ => (c(SCOPE), c(common::API_VERSION)),
                };
                let u = c(&uri(&emu, name));
                let ctx = &*r as *const RefCell<Rec> as *mut c_void;
                let h = create(
                    u.as_ptr(),
                    X509,
                    s.as_ptr(),
                    a.as_ptr(),
                    Some(on_error),
                    ctx,
                );
                assert!(!h.is_null(), "{name} {which}");
                r.borrow_mut().h = h;
                let d = emu.pki().device("long-strings").unwrap();
                assert_eq!(
                    (t.prov_transport_x509_cert.unwrap())(
                        h,
                        c(&d.cert_chain_pem).as_ptr(),
                        c(&d.key_pem).as_ptr()
                    ),
                    0
                );
                let regid = match which {
                    "registration_id" => mb.as_str(),
                    _ => "long-strings",
                };
                let logged_before = common::LOG.lock().unwrap().len();
                assert_ne!(open(&r, regid), 0, "{name} {which} refused at open");
                let lines: Vec<String> = common::LOG.lock().unwrap()[logged_before..].to_vec();
                assert!(
                    lines
                        .iter()
                        .any(|l| l.contains(which) && l.contains("at most 128")),
                    "{name} {which}: {lines:?}"
                );
                assert!(lines.iter().all(|l| l.len() < 1000), "no megabyte log line");
                dowork_for(&r, Duration::from_millis(100));
                assert!(r.borrow().statuses.is_empty() && r.borrow().data.is_empty());
                if which == "registration_id" {
                    // the longest DPS allows still opens
                    assert_eq!(open(&r, &"a".repeat(128)), 0, "{name}");
                }
                (t.prov_transport_destroy.unwrap())(h);
            }
            // a 1 MB uri is a host name no resolver accepts: refused at create, or the
            // registration ends in one clean error within the budget
            let r = x509_handle(&emu, name, t, "long-strings");
            (t.prov_transport_destroy.unwrap())(r.borrow().h);
            let (scope, api) = (c(SCOPE), c(common::API_VERSION));
            let ctx = &*r as *const RefCell<Rec> as *mut c_void;
            let h = create(
                c(&mb).as_ptr(),
                X509,
                scope.as_ptr(),
                api.as_ptr(),
                Some(on_error),
                ctx,
            );
            if h.is_null() {
                continue;
            }
            r.borrow_mut().h = h;
            let d = emu.pki().device("long-strings").unwrap();
            assert_eq!(
                (t.prov_transport_x509_cert.unwrap())(
                    h,
                    c(&d.cert_chain_pem).as_ptr(),
                    c(&d.key_pem).as_ptr()
                ),
                0
            );
            for (option, value) in [("retry_max_attempts", 1u32), ("retry_initial_ms", 50)] {
                assert_eq!(
                    (t.prov_transport_set_option.unwrap())(
                        h,
                        c(option).as_ptr(),
                        &value as *const u32 as *const c_void
                    ),
                    0
                );
            }
            assert_eq!(open(&r, "long-strings"), 0);
            let started = Instant::now();
            pump(&r, LIMIT);
            assert_eq!(
                r.borrow().data,
                vec![PROV_DEVICE_TRANSPORT_RESULT_ERROR],
                "{name} uri"
            );
            assert!(started.elapsed() < LIMIT);
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}
