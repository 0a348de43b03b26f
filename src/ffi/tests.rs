//! The panic boundary, which only a test build can reach (`set_option("test_panic")` panics
//! inside the entry point): the panic becomes a failure return and the error path, once.
//!
//! The boundary's argument checks are tested from outside, where there is one copy of this crate
//! (a unit test that drove the tables through `testkit` would link a second one): the C harness
//! for what a C customer observes (a refusal and its one log line, `ctest/test_sdk_ut.c`; the one
//! home of NULL arguments), and `tests/all/hostile_caller.rs` (hostile values other than NULL) on
//! both tables through the test kit's LL-client stand-in. The map is in ctest/REQUIREMENTS.md,
//! "Where each behaviour is tested".

use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::ptr;

use super::*;

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

#[test]
fn a_panic_becomes_a_failure_and_the_error_path() {
    let c = |s: &str| CString::new(s).unwrap();
    // SAFETY: the entry point returns a static table.
    let t = unsafe { &*Prov_Device_MQTT_Protocol() };
    let (uri, scope, api, regid) = (c("localhost:1"), c("scope"), c("2021-06-01"), c("panicky"));
    let n = ptr::null_mut();
    // SAFETY: valid strings and callbacks; NULL contexts and a NULL error callback are allowed.
    unsafe {
        let h = (t.prov_transport_create.unwrap())(
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(1),
            scope.as_ptr(),
            api.as_ptr(),
            None,
            n,
        );
        assert!(!h.is_null());
        let rc = (t.prov_transport_open.unwrap())(
            h,
            regid.as_ptr(),
            n.cast(),
            n.cast(),
            Some(data_cb),
            n,
            Some(status_cb),
            n,
            None,
            n,
        );
        assert_eq!(rc, 0);
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
