//! The panic boundary and typed checks that turn raw pointers into safe values.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// Runs an entry point's body; a panic becomes `on_panic()`'s value and one log line, and never
/// unwinds into C.
pub fn guard<R>(entry: &'static str, on_panic: impl FnOnce() -> R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::error!(
                "",
                "{entry}: internal error caught at the C boundary: {why}"
            );
            // A panic while handling the panic must not unwind into C either.
            catch_unwind(AssertUnwindSafe(on_panic)).unwrap_or_else(|_| std::process::abort())
        }
    }
}

/// A required C string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub unsafe fn required_str<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::InvalidArgument {
            what,
            why: "is NULL".into(),
        });
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| Error::InvalidArgument {
        what,
        why: format!("is not UTF-8 ({e})"),
    })
}

/// An optional C string argument (NULL = None).
///
/// # Safety
/// As [`required_str`].
pub unsafe fn optional_str<'a>(
    p: *const c_char,
    what: &'static str,
) -> Result<Option<&'a str>, Error> {
    match p.is_null() {
        true => Ok(None),
        // SAFETY: forwarded contract.
        false => unsafe { required_str(p, what) }.map(Some),
    }
}

/// The C convention for `int` results: 0 success, non-zero failure (with one log line).
pub fn to_c(entry: &'static str, context: &str, result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::error!(context, "{entry}: {e}");
            FAILURE
        }
    }
}

/// Any non-zero value is a failure; the SDK's `MU_FAILURE` is `__LINE__`.
pub const FAILURE: i32 = 1;
