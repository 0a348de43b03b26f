//! The C boundary's own checks, through the real tables: every argument check of
//! docs/spec/behaviour.md part 1 returns failure and changes nothing; a panic becomes a failure return and
//! the error path.

use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::{c_char, c_uchar, c_void};
use std::ptr;

use super::*;

fn tables() -> [&'static PROV_DEVICE_TRANSPORT_PROVIDER; 4] {
    // SAFETY: the entry points return pointers to static tables.
    unsafe {
        [
            &*Prov_Device_MQTT_Protocol(),
            &*Prov_Device_MQTT_WS_Protocol(),
            &*PROV_MQTT_Protocol(),
            &*PROV_MQTT_WS_Protocol(),
        ]
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

const X509: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(1);
const SYMM: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(2);

fn create(
    t: &PROV_DEVICE_TRANSPORT_PROVIDER,
    hsm: TRANSPORT_HSM_TYPE,
) -> PROV_DEVICE_TRANSPORT_HANDLE {
    let (uri, scope, api) = (c("localhost:1"), c("scope"), c("2021-06-01"));
    // SAFETY: valid strings; NULL error callback is allowed.
    unsafe {
        (t.prov_transport_create.unwrap())(
            uri.as_ptr(),
            hsm,
            scope.as_ptr(),
            api.as_ptr(),
            None,
            ptr::null_mut(),
        )
    }
}

thread_local! {
    static DATA: Cell<(usize, Option<PROV_DEVICE_TRANSPORT_RESULT>)> = const { Cell::new((0, None)) };
}

unsafe extern "C" fn data_cb(
    r: PROV_DEVICE_TRANSPORT_RESULT,
    _: BUFFER_HANDLE,
    _: *const c_char,
    _: *const c_char,
    _: *mut c_void,
) {
    DATA.with(|d| d.set((d.get().0 + 1, Some(r))));
}
unsafe extern "C" fn status_cb(_: PROV_DEVICE_TRANSPORT_STATUS, _: u32, _: *mut c_void) {}
unsafe extern "C" fn challenge_cb(
    _: *const c_uchar,
    _: usize,
    _: *const c_char,
    _: *mut c_void,
) -> *mut c_char {
    ptr::null_mut()
}
unsafe extern "C" fn parse_cb(_: *const c_char, _: *mut c_void) -> *mut PROV_JSON_INFO {
    ptr::null_mut()
}
unsafe extern "C" fn create_json_cb(
    _: *const c_char,
    _: *const c_char,
    _: *mut c_void,
) -> *mut c_char {
    ptr::null_mut()
}

/// open with the arguments the checks vary.
#[allow(clippy::too_many_arguments)]
unsafe fn open_with(
    t: &PROV_DEVICE_TRANSPORT_PROVIDER,
    h: PROV_DEVICE_TRANSPORT_HANDLE,
    regid: *const c_char,
    ek: BUFFER_HANDLE,
    srk: BUFFER_HANDLE,
    data: PROV_DEVICE_TRANSPORT_REGISTER_CALLBACK,
    status: PROV_DEVICE_TRANSPORT_STATUS_CALLBACK,
    challenge: PROV_TRANSPORT_CHALLENGE_CALLBACK,
) -> i32 {
    let n = ptr::null_mut();
    // SAFETY: `h` is NULL or a live handle from `create`; the strings and callbacks are valid for the call.
    unsafe { (t.prov_transport_open.unwrap())(h, regid, ek, srk, data, n, status, n, challenge, n) }
}

#[test]
fn four_entry_points_twelve_slots() {
    let [mqtt, ws, mqtt2, ws2] = tables();
    assert!(ptr::eq(mqtt, mqtt2) && ptr::eq(ws, ws2));
    assert!(!ptr::eq(mqtt, ws));
    assert_eq!(
        std::mem::size_of::<PROV_DEVICE_TRANSPORT_PROVIDER>(),
        12 * std::mem::size_of::<usize>()
    );
    for t in tables() {
        // SAFETY: the table is 12 pointer-sized Option<fn> fields.
        let slots: [usize; 12] = unsafe { std::mem::transmute_copy(t) };
        assert!(slots.iter().all(|&s| s != 0), "every slot set");
    }
}

#[test]
fn create_refuses_bad_arguments() {
    let t = tables()[0];
    let (uri, scope, api) = (c("host"), c("scope"), c("v"));
    let cases: [(
        *const c_char,
        TRANSPORT_HSM_TYPE,
        *const c_char,
        *const c_char,
    ); 7] = [
        (ptr::null(), X509, scope.as_ptr(), api.as_ptr()),
        (uri.as_ptr(), X509, ptr::null(), api.as_ptr()),
        (uri.as_ptr(), X509, scope.as_ptr(), ptr::null()),
        (
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(0),
            scope.as_ptr(),
            api.as_ptr(),
        ),
        (
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(3),
            scope.as_ptr(),
            api.as_ptr(),
        ),
        (
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(u32::MAX),
            scope.as_ptr(),
            api.as_ptr(),
        ),
        (
            c("mqtts://host/x").into_raw(),
            X509,
            scope.as_ptr(),
            api.as_ptr(),
        ),
    ];
    for (i, (u, hsm, s, a)) in cases.into_iter().enumerate() {
        // SAFETY: NULL or valid strings.
        let h = unsafe { (t.prov_transport_create.unwrap())(u, hsm, s, a, None, ptr::null_mut()) };
        assert!(h.is_null(), "case {i} should be refused");
    }
    let h = create(t, SYMM);
    assert!(!h.is_null());
    // SAFETY: `h` is a live handle from `create`, destroyed once.
    unsafe { (t.prov_transport_destroy.unwrap())(h) };
}

#[test]
fn null_handle_is_refused_by_every_slot() {
    for t in tables() {
        let n = ptr::null_mut();
        let regid = c("r");
        // SAFETY: NULL handles and valid C strings: each slot must refuse them without reading through them.
        unsafe {
            (t.prov_transport_destroy.unwrap())(n);
            (t.prov_transport_dowork.unwrap())(n);
            assert_ne!(
                open_with(
                    t,
                    n,
                    regid.as_ptr(),
                    n.cast(),
                    n.cast(),
                    Some(data_cb),
                    Some(status_cb),
                    None
                ),
                0
            );
            assert_ne!((t.prov_transport_close.unwrap())(n), 0);
            assert_ne!(
                (t.prov_transport_register.unwrap())(n, Some(parse_cb), Some(create_json_cb), n),
                0
            );
            assert_ne!((t.prov_transport_get_op_status.unwrap())(n), 0);
            assert_ne!((t.prov_transport_set_trace.unwrap())(n, true), 0);
            assert_ne!(
                (t.prov_transport_x509_cert.unwrap())(n, regid.as_ptr(), regid.as_ptr()),
                0
            );
            assert_ne!(
                (t.prov_transport_trusted_cert.unwrap())(n, regid.as_ptr()),
                0
            );
            let opts = HTTP_PROXY_OPTIONS {
                host_address: regid.as_ptr(),
                port: 1,
                username: ptr::null(),
                password: ptr::null(),
            };
            assert_ne!((t.prov_transport_set_proxy.unwrap())(n, &opts), 0);
            assert_ne!(
                (t.prov_transport_set_option.unwrap())(n, c("keepalive").as_ptr(), n),
                0
            );
        }
    }
}

#[test]
fn open_checks_then_succeeds_unchanged() {
    let t = tables()[0];
    let regid = c("dev");
    let buf = 8usize as BUFFER_HANDLE; // any non-NULL value: must be refused before use
                                       // SAFETY: `buf` is never read (open refuses it first); `h` is live from `create` until its destroy.
    unsafe {
        let h = create(t, SYMM);
        let bad = [
            open_with(
                t,
                h,
                ptr::null(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(data_cb),
                Some(status_cb),
                Some(challenge_cb),
            ),
            open_with(
                t,
                h,
                regid.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                None,
                Some(status_cb),
                Some(challenge_cb),
            ),
            open_with(
                t,
                h,
                regid.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(data_cb),
                None,
                Some(challenge_cb),
            ),
            open_with(
                t,
                h,
                regid.as_ptr(),
                buf,
                ptr::null_mut(),
                Some(data_cb),
                Some(status_cb),
                Some(challenge_cb),
            ),
            open_with(
                t,
                h,
                regid.as_ptr(),
                ptr::null_mut(),
                buf,
                Some(data_cb),
                Some(status_cb),
                Some(challenge_cb),
            ),
            open_with(
                t,
                h,
                regid.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(data_cb),
                Some(status_cb),
                None,
            ),
        ];
        assert!(bad.iter().all(|&rc| rc != 0), "{bad:?}");
        // nothing changed: a correct open still works, and a second open is refused
        let ok = open_with(
            t,
            h,
            regid.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            Some(data_cb),
            Some(status_cb),
            Some(challenge_cb),
        );
        assert_eq!(ok, 0);
        let again = open_with(
            t,
            h,
            regid.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            Some(data_cb),
            Some(status_cb),
            Some(challenge_cb),
        );
        assert_ne!(again, 0);
        assert_eq!((t.prov_transport_close.unwrap())(h), 0);
        assert_eq!(
            (t.prov_transport_close.unwrap())(h),
            0,
            "double close is harmless"
        );
        (t.prov_transport_destroy.unwrap())(h);

        let h = create(t, X509);
        let ok = open_with(
            t,
            h,
            regid.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            Some(data_cb),
            Some(status_cb),
            None,
        );
        assert_eq!(ok, 0, "X.509 needs no challenge callback");
        (t.prov_transport_destroy.unwrap())(h);
    }
}

#[test]
fn register_and_poll_checks() {
    let t = tables()[1];
    // SAFETY: `h` is live from `create` until its destroy; the other arguments are NULL or valid.
    unsafe {
        let h = create(t, X509);
        let n = ptr::null_mut();
        assert_ne!(
            (t.prov_transport_register.unwrap())(h, None, Some(create_json_cb), n),
            0
        );
        assert_ne!(
            (t.prov_transport_register.unwrap())(h, Some(parse_cb), None, n),
            0
        );
        assert_ne!(
            (t.prov_transport_get_op_status.unwrap())(h),
            0,
            "no operation id yet"
        );
        assert_eq!(
            (t.prov_transport_register.unwrap())(h, Some(parse_cb), Some(create_json_cb), n),
            0,
            "allowed before open"
        );
        assert_ne!(
            (t.prov_transport_register.unwrap())(h, Some(parse_cb), Some(create_json_cb), n),
            0,
            "already in progress"
        );
        (t.prov_transport_destroy.unwrap())(h);
    }
}

#[test]
fn certificate_proxy_and_option_checks() {
    let t = tables()[0];
    // SAFETY: `h` is live from `create` until its destroy; strings and options are valid for each call.
    unsafe {
        let h = create(t, X509);
        let junk = c("not a pem");
        assert_ne!(
            (t.prov_transport_x509_cert.unwrap())(h, ptr::null(), junk.as_ptr()),
            0
        );
        assert_ne!(
            (t.prov_transport_x509_cert.unwrap())(h, junk.as_ptr(), ptr::null()),
            0
        );
        assert_ne!(
            (t.prov_transport_x509_cert.unwrap())(h, junk.as_ptr(), junk.as_ptr()),
            0
        );
        assert_ne!((t.prov_transport_trusted_cert.unwrap())(h, ptr::null()), 0);
        assert_ne!(
            (t.prov_transport_trusted_cert.unwrap())(h, junk.as_ptr()),
            0
        );

        let host = c("proxy.local");
        let user = c("u");
        let pass = c("p");
        let proxy = |host: *const c_char, user: *const c_char, password: *const c_char| {
            HTTP_PROXY_OPTIONS {
                host_address: host,
                port: 8888,
                username: user,
                password,
            }
        };
        let set = |o: *const HTTP_PROXY_OPTIONS| (t.prov_transport_set_proxy.unwrap())(h, o);
        assert_ne!(set(ptr::null()), 0);
        assert_ne!(set(&proxy(ptr::null(), ptr::null(), ptr::null())), 0);
        assert_ne!(set(&proxy(host.as_ptr(), user.as_ptr(), ptr::null())), 0);
        assert_ne!(set(&proxy(host.as_ptr(), ptr::null(), pass.as_ptr())), 0);
        assert_ne!(
            set(&HTTP_PROXY_OPTIONS {
                port: 70000,
                ..proxy(host.as_ptr(), ptr::null(), ptr::null())
            }),
            0
        );
        assert_eq!(set(&proxy(host.as_ptr(), ptr::null(), ptr::null())), 0);
        assert_eq!(
            set(&proxy(host.as_ptr(), user.as_ptr(), pass.as_ptr())),
            0,
            "set again replaces"
        );

        let opt = |name: *const c_char, value: *const c_void| {
            (t.prov_transport_set_option.unwrap())(h, name, value)
        };
        let keepalive = c("keepalive");
        let ten: i32 = 10;
        let huge: i32 = 1 << 20;
        assert_ne!(opt(ptr::null(), &ten as *const i32 as *const c_void), 0);
        assert_ne!(
            opt(
                c("CipherSuite").as_ptr(),
                &ten as *const i32 as *const c_void
            ),
            0
        );
        assert_ne!(opt(keepalive.as_ptr(), ptr::null()), 0);
        assert_ne!(
            opt(keepalive.as_ptr(), &huge as *const i32 as *const c_void),
            0
        );
        assert_eq!(
            opt(keepalive.as_ptr(), &ten as *const i32 as *const c_void),
            0
        );
        let tls11: i32 = 11;
        assert_ne!(
            opt(
                c("tls_version").as_ptr(),
                &tls11 as *const i32 as *const c_void
            ),
            0
        );
        let on = true;
        assert_eq!(
            opt(c("logtrace").as_ptr(), &on as *const bool as *const c_void),
            0
        );
        assert_eq!((t.prov_transport_set_trace.unwrap())(h, false), 0);
        (t.prov_transport_destroy.unwrap())(h);
    }
}

#[test]
fn a_panic_becomes_a_failure_and_the_error_path() {
    let t = tables()[0];
    let regid = c("panicky");
    // SAFETY: `h` is live from `create` until its destroy; strings are valid for each call.
    unsafe {
        let h = create(t, X509);
        assert_eq!(
            open_with(
                t,
                h,
                regid.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
                Some(data_cb),
                Some(status_cb),
                None
            ),
            0
        );
        let v: i32 = 1;
        let rc = (t.prov_transport_set_option.unwrap())(
            h,
            c("test_panic").as_ptr(),
            &v as *const i32 as *const c_void,
        );
        assert_ne!(rc, 0, "the panic is a failure return");
        DATA.with(|d| d.set((0, None)));
        for _ in 0..3 {
            (t.prov_transport_dowork.unwrap())(h);
        }
        let (calls, result) = DATA.with(|d| d.get());
        assert_eq!(
            (calls, result),
            (
                1,
                Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR)
            )
        );
        (t.prov_transport_destroy.unwrap())(h);
    }
}
