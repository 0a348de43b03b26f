//! Calls into the caller's C callbacks, and what they hand back: copy, then `free`. Every call
//! here happens with no lock held, so a callback may call `close` or `destroy`.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_long, c_void};
use std::ptr::{self, NonNull};
use std::time::Instant;

use once_cell::sync::Lazy;

use super::handle::Handle;
use super::types::*;
use crate::dps::info::RegistrationInfo;
use crate::secret::Secret;
use crate::session::{Callout, Outcome, Parsed, ReplyStatus, Ticket};

/// Runs every callout the handle has, in order, re-checking the handle after each callback.
pub fn run_callouts(h: &Handle) {
    while h.is_live() {
        let Some(callout) = h.core.lock().poll(Instant::now()) else {
            return;
        };
        let cbs = h.callbacks();
        match callout {
            Callout::Status {
                status,
                retry_after,
            } => status_cb(&cbs, status, retry_after),
            Callout::Credentials(ticket) => {
                let token = challenge(h, &cbs);
                h.core.lock().credentials(ticket, Instant::now(), token);
            }
            Callout::Payload(ticket) => {
                let body = create_json(&cbs);
                h.core.lock().payload(ticket, Instant::now(), body);
            }
            Callout::Parse { ticket, json } => {
                if !answer_parse(h, &cbs, ticket, &json) {
                    return; // the hook destroyed the handle
                }
            }
            Callout::Info(details) => info_hook(&cbs, &details),
            Callout::KeyFail => error_cb(
                &cbs,
                PROV_DEVICE_TRANSPORT_ERROR::PROV_DEVICE_ERROR_KEY_FAIL,
            ),
            Callout::KeyUnauthorized => error_cb(
                &cbs,
                PROV_DEVICE_TRANSPORT_ERROR::PROV_DEVICE_ERROR_KEY_UNAUTHORIZED,
            ),
            Callout::Failed => data_cb(
                &cbs,
                PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            ),
        }
    }
}

/// The parse callout: the caller's parse callback, then the session's verdict called back (the
/// hook's details just before the data callback of an assignment; no data callback when the
/// hook closed the handle). False when the hook destroyed it.
fn answer_parse(h: &Handle, cbs: &Callbacks, ticket: Ticket, json: &str) -> bool {
    let info = parse(cbs, json);
    let parsed = info.as_ref().map(JsonInfo::parsed);
    let outcome = h.core.lock().parsed(ticket, parsed);
    match (outcome, &info) {
        (Outcome::Assigned, Some(info)) => {
            let details = h.core.lock().take_info();
            if let Some(details) = details {
                info_hook(cbs, &details);
                if !h.is_live() {
                    return false;
                }
                if h.core.lock().session().ticket() != ticket {
                    return true; // the hook closed the handle: this registration is over
                }
            }
            let m = info.members();
            data_cb(
                cbs,
                PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK,
                m.authorization_key,
                m.iothub_uri,
                m.device_id,
            )
        }
        (
            Outcome::Status {
                status,
                retry_after,
            },
            _,
        ) => status_cb(cbs, status, retry_after),
        _ => {}
    }
    drop(info); // frees the record after the callback, by its status
    true
}

fn to_c_status(s: ReplyStatus) -> PROV_DEVICE_TRANSPORT_STATUS {
    use PROV_DEVICE_TRANSPORT_STATUS::*;
    match s {
        ReplyStatus::Connected => PROV_DEVICE_TRANSPORT_STATUS_CONNECTED,
        ReplyStatus::Authenticated => PROV_DEVICE_TRANSPORT_STATUS_AUTHENTICATED,
        ReplyStatus::Unassigned => PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED,
        ReplyStatus::Assigning => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
        ReplyStatus::Assigned => PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
        ReplyStatus::Blacklisted => PROV_DEVICE_TRANSPORT_STATUS_BLACKLISTED,
        ReplyStatus::Transient => PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT,
        ReplyStatus::Error => PROV_DEVICE_TRANSPORT_STATUS_ERROR,
        ReplyStatus::Disabled => PROV_DEVICE_TRANSPORT_STATUS_DISABLED,
    }
}

fn from_c_status(raw: c_int) -> Option<ReplyStatus> {
    const ALL: [ReplyStatus; 9] = [
        ReplyStatus::Connected,
        ReplyStatus::Authenticated,
        ReplyStatus::Unassigned,
        ReplyStatus::Assigning,
        ReplyStatus::Assigned,
        ReplyStatus::Blacklisted,
        ReplyStatus::Transient,
        ReplyStatus::Error,
        ReplyStatus::Disabled,
    ];
    usize::try_from(raw).ok().and_then(|i| ALL.get(i).copied())
}

fn status_cb(cbs: &Callbacks, status: ReplyStatus, retry_after: u32) {
    if let Some(f) = cbs.status_cb {
        // SAFETY: the caller gave this function and this context to open, promising the SDK's
        // signature; the context goes back untouched.
        unsafe { f(to_c_status(status), retry_after, cbs.status_ctx) }
    }
}

fn data_cb(
    cbs: &Callbacks,
    result: PROV_DEVICE_TRANSPORT_RESULT,
    key: BUFFER_HANDLE,
    hub: *const c_char,
    device: *const c_char,
) {
    if let Some(f) = cbs.data_cb {
        // SAFETY: given to open with the SDK's signature; `hub` and `device` are NULL or
        // NUL-terminated strings owned by the reply record, freed only after this returns.
        unsafe { f(result, key, hub, device, cbs.user_ctx) }
    }
}

/// Calls the `registration_info_hook` with C strings that live until it returns. A string
/// with a NUL byte (possible in JSON) is given as NULL rather than cut short.
fn info_hook(cbs: &Callbacks, details: &RegistrationInfo) {
    let Some(f) = cbs.info_hook.callback else {
        return;
    };
    let c = |s: &Option<String>| s.as_deref().and_then(|s| CString::new(s).ok());
    let chain = c(&details.issued_certificate_chain);
    let profile = c(&details.connection_profile);
    let substatus = c(&details.substatus);
    let etag = c(&details.etag);
    let tracking = c(&details.tracking_id);
    let message = c(&details.error_message);
    let p = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
    let info = PROV_MQTT_REGISTRATION_INFO {
        issued_certificate_chain: p(&chain),
        connection_profile: p(&profile),
        substatus: p(&substatus),
        etag: p(&etag),
        dps_status: c_int::from(details.dps_status),
        error_code: details
            .error_code
            .and_then(|code| c_long::try_from(code).ok())
            .unwrap_or(0),
        tracking_id: p(&tracking),
        error_message: p(&message),
    };
    // SAFETY: the caller gave this hook to set_option with the header's signature; `info` and
    // the strings it points to live until after the call; the context goes back untouched.
    unsafe { f(&info, cbs.info_hook.context) }
}

fn error_cb(cbs: &Callbacks, error: PROV_DEVICE_TRANSPORT_ERROR) {
    if let Some(f) = cbs.error_cb {
        // SAFETY: given to create with the SDK's signature (NULL is allowed and skipped above).
        unsafe { f(error, cbs.error_ctx) }
    }
}

use super::handle::Callbacks;

/// Copies a `malloc`ed C string handed to us, then frees it.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string from `malloc` that we now own.
unsafe fn take_c_string(p: *mut c_char) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated (this function's contract).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
    // SAFETY: the callback allocated it with malloc and handed it to us (docs/spec/abi.md,
    // "Who frees what"); nothing points into it after the copy above.
    unsafe { libc::free(p.cast()) };
    Some(bytes)
}

fn challenge(h: &Handle, cbs: &Callbacks) -> Option<Secret> {
    let f = cbs.challenge_cb?;
    // SAFETY: given to open with the SDK's signature; a NULL nonce of length 0 is what the SDK
    // passes over MQTT, and "registration" is a static NUL-terminated string.
    let raw = unsafe { f(ptr::null(), 0, c"registration".as_ptr(), cbs.challenge_ctx) };
    // SAFETY: the callback returns NULL or a malloc'd NUL-terminated token that we now own.
    let token = unsafe { take_c_string(raw) }?;
    match String::from_utf8(token) {
        Ok(t) => Some(Secret::new(t)),
        Err(_) => {
            crate::error!(
                h.core.lock().context(),
                "the challenge callback returned a SAS token that is not UTF-8"
            );
            None
        }
    }
}

fn create_json(cbs: &Callbacks) -> Option<Vec<u8>> {
    let f = cbs.json_create_cb?;
    // SAFETY: given to register with the SDK's signature; ek/srk are NULL over MQTT, as the
    // SDK's transport passes them.
    let raw = unsafe { f(ptr::null(), ptr::null(), cbs.json_ctx) };
    // SAFETY: the callback returns NULL or a malloc'd NUL-terminated body that we now own.
    unsafe { take_c_string(raw) }
}

fn parse(cbs: &Callbacks, json: &str) -> Option<JsonInfo> {
    let f = cbs.json_parse_cb?;
    // The session checked the payload has no NUL byte.
    let document = CString::new(json).ok()?;
    // SAFETY: given to register with the SDK's signature; `document` is NUL-terminated and
    // outlives the call.
    let info = unsafe { f(document.as_ptr(), cbs.json_ctx) };
    NonNull::new(info).map(JsonInfo)
}

/// A `PROV_JSON_INFO` the parse callback gave us; dropping it frees it the SDK's way.
struct JsonInfo(NonNull<PROV_JSON_INFO>);

/// A copy of a record's pointer members (still owned by the record).
struct Members {
    operation_id: *mut c_char,
    authorization_key: BUFFER_HANDLE,
    key_name: *mut c_char,
    iothub_uri: *mut c_char,
    device_id: *mut c_char,
}

impl JsonInfo {
    fn raw_status(&self) -> c_int {
        // SAFETY: the record is live and ours until drop; the status is read as an int so that
        // an out-of-range value from C is not an invalid Rust enum.
        unsafe {
            ptr::addr_of!((*self.0.as_ptr()).prov_status)
                .cast::<c_int>()
                .read()
        }
    }

    /// The pointer members, each read through the raw pointer: no reference to the whole record
    /// is made, since its `prov_status` may hold a value that is not a valid Rust enum.
    fn members(&self) -> Members {
        let p = self.0.as_ptr();
        // For each read: the record is live and ours until drop, and reading a pointer member
        // through the raw pointer is valid whatever the member holds.
        Members {
            // SAFETY: a raw read of a member of the live record (see above).
            operation_id: unsafe { ptr::addr_of!((*p).operation_id).read() },
            // SAFETY: a raw read of a member of the live record (see above).
            authorization_key: unsafe { ptr::addr_of!((*p).authorization_key).read() },
            // SAFETY: a raw read of a member of the live record (see above).
            key_name: unsafe { ptr::addr_of!((*p).key_name).read() },
            // SAFETY: a raw read of a member of the live record (see above).
            iothub_uri: unsafe { ptr::addr_of!((*p).iothub_uri).read() },
            // SAFETY: a raw read of a member of the live record (see above).
            device_id: unsafe { ptr::addr_of!((*p).device_id).read() },
        }
    }

    fn parsed(&self) -> Parsed {
        let id = self.members().operation_id;
        let operation_id = match id.is_null() {
            true => None,
            // SAFETY: non-NULL; the parse callback's record holds NUL-terminated strings.
            false => unsafe { CStr::from_ptr(id) }
                .to_str()
                .ok()
                .map(str::to_owned),
        };
        Parsed {
            status: from_c_status(self.raw_status()),
            operation_id,
        }
    }
}

impl Drop for JsonInfo {
    fn drop(&mut self) {
        // We own the record and, by its status, some of its members (docs/spec/abi.md, "Who
        // frees what"): the members first, then the record. Each member is NULL or came from
        // malloc (strings) or the SDK's BUFFER_new (the key); free(NULL) does nothing.
        let free = |member: *mut c_char| {
            // SAFETY: see above; the record is not read again through this member.
            unsafe { libc::free(member.cast()) }
        };
        let m = self.members();
        match from_c_status(self.raw_status()) {
            Some(ReplyStatus::Unassigned) => {
                buffer_delete(m.authorization_key);
                free(m.key_name);
            }
            Some(ReplyStatus::Assigned) => {
                buffer_delete(m.authorization_key);
                free(m.iothub_uri);
                free(m.device_id);
            }
            Some(ReplyStatus::Assigning) => free(m.operation_id),
            _ => {}
        }
        // SAFETY: the parse callback allocated the record with malloc and handed it to us;
        // this is its one free, and nothing reads it afterwards.
        unsafe { libc::free(self.0.as_ptr().cast()) };
    }
}

type BufferDelete = unsafe extern "C" fn(BUFFER_HANDLE);

/// c-shared-utility's `BUFFER_delete`, found at run time: applications often link that library
/// statically, so the library must load without it.
static BUFFER_DELETE: Lazy<Option<BufferDelete>> = Lazy::new(|| {
    // SAFETY: dlsym takes RTLD_DEFAULT and a static NUL-terminated name; it only looks up.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"BUFFER_delete".as_ptr()) };
    // SAFETY: non-NULL, and c-shared-utility's BUFFER_delete (buffer_.h) has this signature.
    (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, BufferDelete>(sym) })
});

fn buffer_delete(key: BUFFER_HANDLE) {
    if key.is_null() {
        return;
    }
    match *BUFFER_DELETE {
        // SAFETY: non-NULL, a BUFFER_HANDLE the parse callback created and handed to us; this
        // is its one delete.
        Some(f) => unsafe { f(key) },
        None => crate::error!(
            "",
            "cannot free the reply's authorization_key: BUFFER_delete is not visible in this process (link c-shared-utility so that it exports BUFFER_delete, e.g. with -rdynamic); the buffer is leaked"
        ),
    }
}
