//! A Rust stand-in for the SDK's provisioning LL client (prov_device_ll_client.c): it drives a
//! provider table through its C function pointers exactly as the LL client does (create,
//! options, open, dowork loop, register on CONNECTED, poll after ASSIGNING with the retry
//! interval, register again after TRANSIENT, close inside the data callback, destroy), with C
//! callbacks that allocate with malloc as the SDK's do.
#![allow(dead_code)]

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uchar, c_void};
use std::ptr;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use prov_mqtt_transport::ffi::*;

pub const SCOPE: &str = "0ne00000000";
pub const API_VERSION: &str = "2021-06-01";

/// Every log line the library printed, for tests that check what was said.
pub static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        prov_mqtt_transport::log::set_sink(|_, line| {
            eprintln!("{line}");
            LOG.lock().unwrap().push(line.to_owned());
        })
    });
}

/// The log lines that name this registration id.
pub fn logs_for(regid: &str) -> Vec<String> {
    let tag = format!("[{regid}]");
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&tag))
        .cloned()
        .collect()
}

#[derive(Clone)]
pub enum Auth {
    X509 {
        cert_chain_pem: String,
        key_pem: String,
    },
    SymmetricKey {
        key_b64: String,
    },
}

/// An HTTP proxy: host, port, and (user, password) for basic auth.
#[derive(Clone)]
pub struct ProxySetting {
    pub host: String,
    pub port: i32,
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct Device {
    pub protocol: extern "C" fn() -> *const PROV_DEVICE_TRANSPORT_PROVIDER,
    pub uri: String,
    pub registration_id: String,
    pub auth: Auth,
    pub trusted_ca: Option<String>,
    /// (name, value) pairs given to set_option as `const uint32_t*`.
    pub u32_options: Vec<(&'static str, u32)>,
    pub proxy: Option<ProxySetting>,
    pub trace: bool,
    /// Close the handle inside the data callback, as the LL client does.
    pub close_in_callback: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub result: Option<PROV_DEVICE_TRANSPORT_RESULT>,
    pub hub: Option<String>,
    pub device_id: Option<String>,
    pub statuses: Vec<(PROV_DEVICE_TRANSPORT_STATUS, u32)>,
    pub errors: Vec<PROV_DEVICE_TRANSPORT_ERROR>,
    pub data_callbacks: usize,
    pub elapsed: Duration,
}

/// What the callbacks see (the LL client's PROV_INSTANCE_INFO, reduced).
struct Ctx {
    table: *const PROV_DEVICE_TRANSPORT_PROVIDER,
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    device: Device,
    outcome: RefCell<Outcome>,
    /// LL states: what to send next and when.
    next: RefCell<Option<(Next, Instant)>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Register,
    Poll,
}

fn ctx<'a>(p: *mut c_void) -> &'a Ctx {
    // SAFETY: every callback gets the Ctx pointer this driver passed, alive for the whole run.
    unsafe { &*(p as *const Ctx) }
}

fn table(c: &Ctx) -> &PROV_DEVICE_TRANSPORT_PROVIDER {
    // SAFETY: the provider functions return a pointer to a static table.
    unsafe { &*c.table }
}

fn strdup(s: &str) -> *mut c_char {
    let c = CString::new(s).unwrap();
    // SAFETY: strdup mallocs a copy; the transport frees it.
    unsafe { libc::strdup(c.as_ptr()) }
}

unsafe extern "C" fn on_data(
    result: PROV_DEVICE_TRANSPORT_RESULT,
    _key: BUFFER_HANDLE,
    hub: *const c_char,
    device_id: *const c_char,
    user: *mut c_void,
) {
    let c = ctx(user);
    let text = |p: *const c_char| {
        // SAFETY: non-NULL, a NUL-terminated string valid during the callback.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    {
        let mut o = c.outcome.borrow_mut();
        o.result = Some(result);
        o.hub = text(hub);
        o.device_id = text(device_id);
        o.data_callbacks += 1;
    }
    *c.next.borrow_mut() = None;
    if c.device.close_in_callback {
        // The LL client closes the transport from inside this callback.
        // SAFETY: the live handle this callback belongs to; closing from the callback is allowed.
        unsafe { (table(c).prov_transport_close.unwrap())(c.handle) };
    }
}

unsafe extern "C" fn on_status(
    status: PROV_DEVICE_TRANSPORT_STATUS,
    retry: u32,
    user: *mut c_void,
) {
    use PROV_DEVICE_TRANSPORT_STATUS::*;
    let c = ctx(user);
    c.outcome.borrow_mut().statuses.push((status, retry));
    let wait = Duration::from_secs(u64::from(retry));
    let has_op = c
        .outcome
        .borrow()
        .statuses
        .iter()
        .any(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING);
    let next = match status {
        PROV_DEVICE_TRANSPORT_STATUS_CONNECTED => Some((Next::Register, Instant::now())),
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING | PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED => {
            Some((Next::Poll, Instant::now() + wait))
        }
        PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT => Some((
            if has_op { Next::Poll } else { Next::Register },
            Instant::now() + wait,
        )),
        _ => None,
    };
    *c.next.borrow_mut() = next;
}

unsafe extern "C" fn on_error(error: PROV_DEVICE_TRANSPORT_ERROR, user: *mut c_void) {
    ctx(user).outcome.borrow_mut().errors.push(error);
}

unsafe extern "C" fn on_challenge(
    nonce: *const c_uchar,
    nonce_len: usize,
    key_name: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    assert!(nonce.is_null() && nonce_len == 0);
    assert_eq!(
        // SAFETY: the transport passes a NUL-terminated key name.
        unsafe { CStr::from_ptr(key_name) }.to_str().unwrap(),
        "registration"
    );
    let c = ctx(user);
    match &c.device.auth {
        Auth::SymmetricKey { key_b64 } => {
            let expiry = dps_emulator::sas::now_unix() + 3600;
            strdup(&dps_emulator::sas::token(
                SCOPE,
                &c.device.registration_id,
                key_b64,
                expiry,
            ))
        }
        Auth::X509 { .. } => ptr::null_mut(),
    }
}

unsafe extern "C" fn on_create_json(
    ek: *const c_char,
    srk: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    assert!(ek.is_null() && srk.is_null());
    let c = ctx(user);
    strdup(&serde_json::json!({ "registrationId": c.device.registration_id }).to_string())
}

/// The LL client's parse: malloc'd record, members malloc'd, NULL for failures.
unsafe extern "C" fn on_parse(json: *const c_char, _user: *mut c_void) -> *mut PROV_JSON_INFO {
    use PROV_DEVICE_TRANSPORT_STATUS::*;
    // SAFETY: the transport passes a NUL-terminated document valid during the call.
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return ptr::null_mut();
    };
    let s = |x: &serde_json::Value| x.as_str().map(str::to_owned);
    let status = match v.get("status").and_then(|x| x.as_str()) {
        Some("assigning") => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
        Some("assigned") => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
        Some("disabled") => PROV_DEVICE_TRANSPORT_STATUS_DISABLED,
        _ => return ptr::null_mut(),
    };
    // SAFETY: malloc of the record size; every field is written below.
    let info =
        unsafe { libc::malloc(std::mem::size_of::<PROV_JSON_INFO>()) } as *mut PROV_JSON_INFO;
    let dup = |x: Option<String>| x.map(|x| strdup(&x)).unwrap_or(ptr::null_mut());
    let state = v.get("registrationState").cloned().unwrap_or_default();
    let (op, hub, dev) = match status {
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING => {
            let Some(op) = v.get("operationId").and_then(s) else {
                // SAFETY: `info` came from malloc above and is not used again.
                unsafe { libc::free(info.cast()) };
                return ptr::null_mut();
            };
            (dup(Some(op)), ptr::null_mut(), ptr::null_mut())
        }
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED => (
            ptr::null_mut(),
            dup(state.get("assignedHub").and_then(s)),
            dup(state.get("deviceId").and_then(s)),
        ),
        _ => (ptr::null_mut(), ptr::null_mut(), ptr::null_mut()),
    };
    // SAFETY: `info` is a malloc of the record's size; this writes every field.
    unsafe {
        info.write(PROV_JSON_INFO {
            prov_status: status,
            operation_id: op,
            authorization_key: ptr::null_mut(),
            key_name: ptr::null_mut(),
            iothub_uri: hub,
            device_id: dev,
        })
    };
    info
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Registers `device` the way the LL client does; returns what the callbacks saw.
pub fn register(device: &Device, timeout: Duration) -> Outcome {
    capture_logs();
    let started = Instant::now();
    // SAFETY: the provider function returns a static table.
    let t = unsafe { &*(device.protocol)() };
    let mut context = Box::new(Ctx {
        table: t,
        handle: ptr::null_mut(),
        device: device.clone(),
        outcome: RefCell::new(Outcome::default()),
        next: RefCell::new(None),
    });
    let user = &mut *context as *mut Ctx as *mut c_void;
    let hsm = match device.auth {
        Auth::X509 { .. } => TRANSPORT_HSM_TYPE(1),
        Auth::SymmetricKey { .. } => TRANSPORT_HSM_TYPE(2),
    };
    let (uri, scope, api) = (c(&device.uri), c(SCOPE), c(API_VERSION));
    // SAFETY: the slots get valid C strings, this file's callbacks and `user`, which outlives the handle.
    unsafe {
        let h = (t.prov_transport_create.unwrap())(
            uri.as_ptr(),
            hsm,
            scope.as_ptr(),
            api.as_ptr(),
            Some(on_error),
            user,
        );
        assert!(!h.is_null(), "create failed");
        context.handle = h;
        if device.trace {
            assert_eq!((t.prov_transport_set_trace.unwrap())(h, true), 0);
        }
        if let Some(ca) = &device.trusted_ca {
            assert_eq!(
                (t.prov_transport_trusted_cert.unwrap())(h, c(ca).as_ptr()),
                0
            );
        }
        for (name, value) in &device.u32_options {
            let v: u32 = *value;
            assert_eq!(
                (t.prov_transport_set_option.unwrap())(
                    h,
                    c(name).as_ptr(),
                    &v as *const u32 as *const c_void
                ),
                0
            );
        }
        if let Some(ProxySetting {
            host,
            port,
            credentials,
        }) = &device.proxy
        {
            let host = c(host);
            let (user_c, pass_c) = match credentials {
                Some((u, p)) => (Some(c(u)), Some(c(p))),
                None => (None, None),
            };
            let opts = HTTP_PROXY_OPTIONS {
                host_address: host.as_ptr(),
                port: *port,
                username: user_c.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                password: pass_c.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            };
            assert_eq!((t.prov_transport_set_proxy.unwrap())(h, &opts), 0);
        }
        if let Auth::X509 {
            cert_chain_pem,
            key_pem,
        } = &device.auth
        {
            assert_eq!(
                (t.prov_transport_x509_cert.unwrap())(
                    h,
                    c(cert_chain_pem).as_ptr(),
                    c(key_pem).as_ptr()
                ),
                0
            );
        }
        let regid = c(&device.registration_id);
        let rc: c_int = (t.prov_transport_open.unwrap())(
            h,
            regid.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            Some(on_data),
            user,
            Some(on_status),
            user,
            Some(on_challenge),
            user,
        );
        assert_eq!(rc, 0, "open failed");
        while context.outcome.borrow().result.is_none() && started.elapsed() < timeout {
            (t.prov_transport_dowork.unwrap())(h);
            let due = *context.next.borrow();
            if let Some((next, at)) = due {
                if Instant::now() >= at {
                    *context.next.borrow_mut() = None;
                    let rc = match next {
                        Next::Register => (t.prov_transport_register.unwrap())(
                            h,
                            Some(on_parse),
                            Some(on_create_json),
                            user,
                        ),
                        Next::Poll => (t.prov_transport_get_op_status.unwrap())(h),
                    };
                    assert_eq!(rc, 0, "{next:?} refused");
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // A few more rounds: nothing may be called back after the outcome.
        for _ in 0..20 {
            (t.prov_transport_dowork.unwrap())(h);
        }
        assert_eq!((t.prov_transport_close.unwrap())(h), 0);
        (t.prov_transport_destroy.unwrap())(h);
    }
    let mut outcome = context.outcome.into_inner();
    outcome.elapsed = started.elapsed();
    outcome
}

/// A real tinyproxy (Debian) on a free loopback port, with basic auth `user`/`password`; killed
/// and its directory removed on drop.
pub struct Tinyproxy {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts tinyproxy; `extra` are more configuration lines.
pub fn tinyproxy(name: &str, password: &str, extra: &str) -> Tinyproxy {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("prov-proxy-{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nBasicAuth user {password}\nLogLevel Info\nMaxClients 20\n{extra}"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy is installed (scripts/test.sh installs it: apt-get install tinyproxy)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "tinyproxy did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Tinyproxy { child, port, dir }
}
