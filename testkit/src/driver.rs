//! The LL-client stand-in: the SDK's `prov_device_ll_client.c` reduced to what a transport sees.
//! The callbacks allocate what the transport frees with `malloc` (`strdup`), as the SDK's do.

use std::cell::{Cell, Ref, RefCell};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uchar, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use prov_mqtt_transport::ffi::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

use crate::device::{Auth, Device, ProxySetting};

/// What a callback does after recording what it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Nothing,
    /// register from the next `dowork` round (the LL client's way after CONNECTED)
    Later,
    /// register from inside the callback
    Register,
    Close,
    Destroy,
    /// call `dowork` again, re-entrantly
    DoWork,
}

/// What the callbacks saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// the last data callback's result
    pub result: Option<PROV_DEVICE_TRANSPORT_RESULT>,
    /// every data callback's result, in order
    pub results: Vec<PROV_DEVICE_TRANSPORT_RESULT>,
    pub hub: Option<String>,
    pub device_id: Option<String>,
    pub statuses: Vec<(PROV_DEVICE_TRANSPORT_STATUS, u32)>,
    pub errors: Vec<PROV_DEVICE_TRANSPORT_ERROR>,
    pub data_callbacks: usize,
    /// from create to the end of [`register`]
    pub elapsed: Duration,
    /// when the data callback came
    pub done_at: Option<Instant>,
    /// callbacks after the handle was destroyed (must stay 0)
    pub late: usize,
    /// re-entrant `dowork` calls made by [`Then::DoWork`]
    pub reentered: usize,
    /// every `registration_info_hook` call, in order
    pub infos: Vec<Info>,
}

/// What one `registration_info_hook` call was given, copied.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Info {
    pub issued_certificate_chain: Option<String>,
    pub connection_profile: Option<String>,
    pub substatus: Option<String>,
    pub etag: Option<String>,
    pub dps_status: i32,
    pub error_code: i64,
    pub tracking_id: Option<String>,
    pub error_message: Option<String>,
    /// data callbacks seen before this call (the hook comes just before the data callback)
    pub data_callbacks_before: usize,
}

/// The `registration_info_hook` callback: records the details, then acts as the device says.
///
/// # Safety
/// As the transport calls it: `info` points to a valid record whose strings are NULL or
/// NUL-terminated, and `user` is NULL or the context this driver passed.
pub unsafe extern "C" fn on_info(info: *const PROV_MQTT_REGISTRATION_INFO, user: *mut c_void) {
    let Some(c) = ctx(user) else { return };
    assert!(!info.is_null(), "the hook is given a record");
    // SAFETY: the transport passes a valid record for the call.
    let i = unsafe { &*info };
    #[allow(clippy::useless_conversion)] // c_long is i64 here, i32 on other targets
    {
        let mut o = c.outcome.borrow_mut();
        o.late += usize::from(c.destroyed.get());
        let before = o.data_callbacks;
        o.infos.push(Info {
            issued_certificate_chain: text(i.issued_certificate_chain),
            connection_profile: text(i.connection_profile),
            substatus: text(i.substatus),
            etag: text(i.etag),
            dps_status: i.dps_status,
            error_code: i64::from(i.error_code),
            tracking_id: text(i.tracking_id),
            error_message: text(i.error_message),
            data_callbacks_before: before,
        });
    }
    act(c, c.device.on_info);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Register,
    Poll,
}

/// The LL client's instance (its PROV_INSTANCE_INFO, reduced); every callback's context.
struct Ctx {
    table: &'static PROV_DEVICE_TRANSPORT_PROVIDER,
    handle: Cell<PROV_DEVICE_TRANSPORT_HANDLE>,
    device: Device,
    on_connected: Cell<Then>,
    on_data: Cell<Then>,
    outcome: RefCell<Outcome>,
    /// what to send next and when
    next: Cell<Option<(Next, Instant)>>,
    has_op: Cell<bool>,
    destroyed: Cell<bool>,
}

fn ctx<'a>(p: *mut c_void) -> Option<&'a Ctx> {
    // SAFETY: every context this driver passes is its live Ctx (it outlives the handle); tests
    // that pass NULL contexts get nothing recorded.
    (!p.is_null()).then(|| unsafe { &*(p as *const Ctx) })
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A malloc'd copy, as the SDK's callbacks return.
pub fn strdup(s: &str) -> *mut c_char {
    // SAFETY: strdup mallocs a copy of a NUL-terminated string; the transport frees it.
    unsafe { libc::strdup(c(s).as_ptr()) }
}

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: the transport passes NULL or a NUL-terminated string valid during the call.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Runs `then` with no borrow held (the call may call back).
fn act(c: &Ctx, then: Then) {
    let (t, h) = (c.table, c.handle.get());
    let user = c as *const Ctx as *mut c_void;
    // SAFETY: the live handle of this Ctx, with this driver's callbacks.
    unsafe {
        match then {
            Then::Nothing => {}
            Then::Later => c.next.set(Some((Next::Register, Instant::now()))),
            Then::Register => assert_eq!(
                (t.prov_transport_register.unwrap())(h, Some(on_parse), Some(on_create_json), user),
                0,
                "register from inside the callback"
            ),
            Then::Close => assert_eq!((t.prov_transport_close.unwrap())(h), 0),
            Then::Destroy => {
                c.destroyed.set(true);
                (t.prov_transport_destroy.unwrap())(h)
            }
            Then::DoWork => {
                c.outcome.borrow_mut().reentered += 1;
                (t.prov_transport_dowork.unwrap())(h)
            }
        }
    }
}

/// The data callback: records the result, then closes (the LL client's way) or as told.
///
/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_data(
    result: PROV_DEVICE_TRANSPORT_RESULT,
    _key: BUFFER_HANDLE,
    hub: *const c_char,
    device_id: *const c_char,
    user: *mut c_void,
) {
    let Some(c) = ctx(user) else { return };
    {
        let mut o = c.outcome.borrow_mut();
        o.late += usize::from(c.destroyed.get());
        o.result = Some(result);
        o.results.push(result);
        o.hub = text(hub);
        o.device_id = text(device_id);
        o.data_callbacks += 1;
        o.done_at = Some(Instant::now());
    }
    c.next.set(None);
    act(c, c.on_data.get());
}

/// The status callback: the LL client's next step, with the retry interval.
///
/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_status(
    status: PROV_DEVICE_TRANSPORT_STATUS,
    retry: u32,
    user: *mut c_void,
) {
    let Some(c) = ctx(user) else { return };
    {
        let mut o = c.outcome.borrow_mut();
        o.late += usize::from(c.destroyed.get());
        o.statuses.push((status, retry));
    }
    let wait = match c.device.poll_at_once {
        true => Duration::ZERO,
        false => Duration::from_secs(u64::from(retry)),
    };
    match status {
        PROV_DEVICE_TRANSPORT_STATUS_CONNECTED => act(c, c.on_connected.get()),
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING | PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED => {
            c.has_op.set(true);
            c.next.set(Some((Next::Poll, Instant::now() + wait)));
        }
        PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT => {
            let next = match c.has_op.get() {
                true => Next::Poll,
                false => Next::Register,
            };
            c.next.set(Some((next, Instant::now() + wait)));
        }
        _ => {}
    }
}

/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_error(error: PROV_DEVICE_TRANSPORT_ERROR, user: *mut c_void) {
    if let Some(c) = ctx(user) {
        c.outcome.borrow_mut().errors.push(error);
    }
}

/// The SAS token for a symmetric-key device; NULL for X.509.
///
/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_challenge(
    nonce: *const c_uchar,
    nonce_len: usize,
    key_name: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    assert!(nonce.is_null() && nonce_len == 0);
    assert_eq!(text(key_name).as_deref(), Some("registration"));
    let Some(c) = ctx(user) else {
        return ptr::null_mut();
    };
    match &c.device.auth {
        Auth::SymmetricKey { key_b64 } => {
            let expiry = dps_emulator::sas::now_unix() + 3600;
            strdup(&dps_emulator::sas::token(
                &c.device.scope,
                &c.device.registration_id,
                key_b64,
                expiry,
            ))
        }
        Auth::X509 { .. } => ptr::null_mut(),
    }
}

/// The registration request body: `registrationId`, and `payload` when the device has one.
///
/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_create_json(
    ek: *const c_char,
    srk: *const c_char,
    user: *mut c_void,
) -> *mut c_char {
    assert!(ek.is_null() && srk.is_null());
    let Some(c) = ctx(user) else {
        return strdup("{}");
    };
    let mut body = serde_json::json!({ "registrationId": c.device.registration_id });
    if let Some(payload) = &c.device.payload {
        body["payload"] = payload.clone();
    }
    if let Some(csr) = &c.device.body_csr {
        body["csr"] = csr.clone().into();
    }
    strdup(&body.to_string())
}

/// The LL client's parse: a malloc'd record with malloc'd members, NULL for what it cannot use.
///
/// # Safety
/// As the transport calls it: `user` is NULL or the context this driver passed, and each
/// string is NULL or NUL-terminated.
pub unsafe extern "C" fn on_parse(json: *const c_char, _user: *mut c_void) -> *mut PROV_JSON_INFO {
    let Some(Ok(v)) = text(json).map(|t| serde_json::from_str::<serde_json::Value>(&t)) else {
        return ptr::null_mut();
    };
    let status = match v.get("status").and_then(|x| x.as_str()) {
        Some("assigning") => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
        Some("assigned") => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
        Some("disabled") => PROV_DEVICE_TRANSPORT_STATUS_DISABLED,
        _ => return ptr::null_mut(),
    };
    let dup =
        |x: Option<&serde_json::Value>| x.and_then(|x| x.as_str()).map_or(ptr::null_mut(), strdup);
    let state = v.get("registrationState");
    let (op, hub, dev) = match status {
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING => {
            let op = dup(v.get("operationId"));
            if op.is_null() {
                return ptr::null_mut();
            }
            (op, ptr::null_mut(), ptr::null_mut())
        }
        PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED => (
            ptr::null_mut(),
            dup(state.and_then(|s| s.get("assignedHub"))),
            dup(state.and_then(|s| s.get("deviceId"))),
        ),
        _ => (ptr::null_mut(), ptr::null_mut(), ptr::null_mut()),
    };
    // SAFETY: malloc of the record's size; every field is written before it is returned.
    unsafe {
        let info = libc::malloc(std::mem::size_of::<PROV_JSON_INFO>()) as *mut PROV_JSON_INFO;
        assert!(!info.is_null(), "malloc");
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

/// One handle driven as the LL client drives it, step by step. Destroyed on drop (unless a
/// callback or the test destroyed it).
pub struct Ll {
    ctx: Box<Ctx>,
}

impl Ll {
    /// create, then the device's trace, trusted CA, options, proxy and certificate (each must
    /// succeed); None when create refuses.
    pub fn try_create(device: &Device) -> Option<Ll> {
        let t = device.proto.table();
        let ll = Ll {
            ctx: Box::new(Ctx {
                table: t,
                handle: Cell::new(ptr::null_mut()),
                device: device.clone(),
                on_connected: Cell::new(device.on_connected),
                on_data: Cell::new(device.on_data),
                outcome: RefCell::new(Outcome::default()),
                next: Cell::new(None),
                has_op: Cell::new(false),
                destroyed: Cell::new(false),
            }),
        };
        let hsm = match device.auth {
            Auth::X509 { .. } => TRANSPORT_HSM_TYPE(1),
            Auth::SymmetricKey { .. } => TRANSPORT_HSM_TYPE(2),
        };
        let (uri, scope, api) = (c(&device.uri), c(&device.scope), c(&device.api_version));
        // SAFETY: valid strings; the context outlives the handle.
        let h = unsafe {
            (t.prov_transport_create.unwrap())(
                uri.as_ptr(),
                hsm,
                scope.as_ptr(),
                api.as_ptr(),
                Some(on_error),
                ll.user(),
            )
        };
        if h.is_null() {
            ll.ctx.destroyed.set(true);
            return None;
        }
        ll.ctx.handle.set(h);
        ll.configure();
        Some(ll)
    }

    /// [`Ll::try_create`], which must succeed.
    pub fn create(device: &Device) -> Ll {
        Ll::try_create(device).expect("create failed")
    }

    fn configure(&self) {
        let (t, h, d) = (self.ctx.table, self.handle(), &self.ctx.device);
        // SAFETY: a live handle; every pointer is valid for the call.
        unsafe {
            if d.trace {
                assert_eq!((t.prov_transport_set_trace.unwrap())(h, true), 0);
            }
            if let Some(ca) = &d.trusted_ca {
                assert_eq!(
                    (t.prov_transport_trusted_cert.unwrap())(h, c(ca).as_ptr()),
                    0
                );
            }
            for (name, value) in &d.u32_options {
                let v: u32 = *value;
                assert_eq!(
                    (t.prov_transport_set_option.unwrap())(
                        h,
                        c(name).as_ptr(),
                        &v as *const u32 as *const c_void
                    ),
                    0,
                    "set_option {name}={v}"
                );
            }
            for (name, value) in &d.str_options {
                assert_eq!(
                    self.set_option_str(name, value.as_deref()),
                    0,
                    "set_option {name}={value:?}"
                );
            }
            if d.info_hook {
                assert_eq!(
                    self.set_info_hook(true),
                    0,
                    "set_option registration_info_hook"
                );
            }
            if let Some(ProxySetting {
                host,
                port,
                credentials,
            }) = &d.proxy
            {
                let host = c(host);
                let (user, pass) = match credentials {
                    Some((u, p)) => (Some(c(u)), Some(c(p))),
                    None => (None, None),
                };
                let opts = HTTP_PROXY_OPTIONS {
                    host_address: host.as_ptr(),
                    port: *port,
                    username: user.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                    password: pass.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                };
                assert_eq!((t.prov_transport_set_proxy.unwrap())(h, &opts), 0);
            }
            if let Auth::X509 {
                cert_chain_pem,
                key_pem,
            } = &d.auth
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
        }
    }

    /// set_option with a `const char*` value (None: NULL).
    pub fn set_option_str(&self, name: &str, value: Option<&str>) -> c_int {
        let value = value.map(c);
        let v = value.as_ref().map_or(ptr::null(), |v| v.as_ptr()) as *const c_void;
        // SAFETY: a live handle; the strings are valid for the call.
        unsafe {
            (self.ctx.table.prov_transport_set_option.unwrap())(self.handle(), c(name).as_ptr(), v)
        }
    }

    /// set_option `registration_info_hook`: this driver's recorder (on) or NULL (off).
    pub fn set_info_hook(&self, on: bool) -> c_int {
        let hook = PROV_MQTT_REGISTRATION_INFO_HOOK {
            callback: Some(on_info),
            context: self.user(),
        };
        let v = match on {
            true => &hook as *const PROV_MQTT_REGISTRATION_INFO_HOOK as *const c_void,
            false => ptr::null(),
        };
        let name = c("registration_info_hook");
        // SAFETY: a live handle; the hook is copied during the call; the context outlives
        // the handle.
        unsafe {
            (self.ctx.table.prov_transport_set_option.unwrap())(self.handle(), name.as_ptr(), v)
        }
    }

    fn user(&self) -> *mut c_void {
        &*self.ctx as *const Ctx as *mut c_void
    }

    pub fn table(&self) -> &'static PROV_DEVICE_TRANSPORT_PROVIDER {
        self.ctx.table
    }

    pub fn handle(&self) -> PROV_DEVICE_TRANSPORT_HANDLE {
        self.ctx.handle.get()
    }

    pub fn device(&self) -> &Device {
        &self.ctx.device
    }

    /// open with the device's registration id and this driver's callbacks.
    pub fn open(&self) -> c_int {
        let regid = self.ctx.device.registration_id.clone();
        self.open_as(&regid)
    }

    /// open with another registration id.
    pub fn open_as(&self, regid: &str) -> c_int {
        let (t, user, id) = (self.ctx.table, self.user(), c(regid));
        // SAFETY: a live handle, valid strings and callbacks, the context outlives the handle.
        unsafe {
            (t.prov_transport_open.unwrap())(
                self.handle(),
                id.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(on_data),
                user,
                Some(on_status),
                user,
                Some(on_challenge),
                user,
            )
        }
    }

    pub fn register(&self) -> c_int {
        // SAFETY: a live handle and this driver's callbacks.
        unsafe {
            (self.ctx.table.prov_transport_register.unwrap())(
                self.handle(),
                Some(on_parse),
                Some(on_create_json),
                self.user(),
            )
        }
    }

    pub fn poll(&self) -> c_int {
        // SAFETY: a live handle.
        unsafe { (self.ctx.table.prov_transport_get_op_status.unwrap())(self.handle()) }
    }

    pub fn dowork(&self) {
        if !self.ctx.destroyed.get() {
            // SAFETY: a live handle.
            unsafe { (self.ctx.table.prov_transport_dowork.unwrap())(self.handle()) }
        }
    }

    pub fn close(&self) -> c_int {
        // SAFETY: a live handle.
        unsafe { (self.ctx.table.prov_transport_close.unwrap())(self.handle()) }
    }

    /// destroy (once; later calls and drop do nothing).
    pub fn destroy(&self) {
        if !self.ctx.destroyed.replace(true) {
            // SAFETY: a live handle, destroyed once.
            unsafe { (self.ctx.table.prov_transport_destroy.unwrap())(self.handle()) }
        }
    }

    pub fn destroyed(&self) -> bool {
        self.ctx.destroyed.get()
    }

    /// What the callbacks saw so far.
    pub fn outcome(&self) -> Ref<'_, Outcome> {
        self.ctx.outcome.borrow()
    }

    /// Forget the data callbacks seen so far (before a second registration on the handle).
    pub fn forget_results(&self) {
        let mut o = self.ctx.outcome.borrow_mut();
        o.result = None;
        o.results.clear();
        o.data_callbacks = 0;
        o.done_at = None;
    }

    pub fn set_on_connected(&self, then: Then) {
        self.ctx.on_connected.set(then);
    }

    pub fn set_on_data(&self, then: Then) {
        self.ctx.on_data.set(then);
    }

    /// True once the data callback came or the handle is gone.
    pub fn done(&self) -> bool {
        self.ctx.destroyed.get() || self.ctx.outcome.borrow().result.is_some()
    }

    /// One round of the LL client's loop: dowork, then the request that is due at `now`.
    pub fn step(&self, now: Instant) {
        self.dowork();
        if self.ctx.destroyed.get() {
            return;
        }
        if let Some((next, at)) = self.ctx.next.get() {
            if now >= at {
                self.ctx.next.set(None);
                let rc = match next {
                    Next::Register => self.register(),
                    Next::Poll => self.poll(),
                };
                assert_eq!(rc, 0, "{next:?} refused");
            }
        }
    }

    /// Rounds of the loop, `pause` apart, until [`Ll::done`] or `limit`.
    pub fn pump_every(&self, limit: Duration, pause: Duration) {
        let started = Instant::now();
        while !self.done() && started.elapsed() < limit {
            self.step(Instant::now());
            std::thread::sleep(pause);
        }
    }

    /// Rounds of the loop, 1 ms apart, until [`Ll::done`] or `limit`.
    pub fn pump(&self, limit: Duration) {
        self.pump_every(limit, Duration::from_millis(1));
    }

    /// Only dowork (no requests), for `d`.
    pub fn dowork_for(&self, d: Duration) {
        let started = Instant::now();
        while started.elapsed() < d {
            self.dowork();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Ll {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Registers `device` the way the LL client does: create, options, open, the loop until the
/// data callback (or `timeout`), a few more rounds (nothing may be called back after the
/// outcome), close, destroy. Returns what the callbacks saw.
pub fn register(device: &Device, timeout: Duration) -> Outcome {
    crate::log::capture_logs();
    let started = Instant::now();
    let ll = Ll::create(device);
    assert_eq!(ll.open(), 0, "open failed");
    while ll.outcome().result.is_none() && !ll.destroyed() && started.elapsed() < timeout {
        ll.step(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..20 {
        ll.dowork();
    }
    if !ll.destroyed() {
        assert_eq!(ll.close(), 0);
    }
    ll.destroy();
    let mut outcome = ll.outcome().clone();
    outcome.elapsed = started.elapsed();
    outcome
}
