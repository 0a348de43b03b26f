//! The 12 slots, the two provider tables and the four exported entry points. Each slot: panic
//! boundary, NULL and range checks, conversion, one call into the core, one result mapping.

use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use super::boundary::{guard, optional_str, required_str, to_c, FAILURE};
use super::callbacks::run_callouts;
use super::handle::Handle;
use super::types::*;
use crate::error::Error;
use crate::net::Flavor;
use crate::options::{self, Kind, Setting};
use crate::secret::Secret;
use crate::session::Auth;
use crate::transport::Transport;

fn null_arg(what: &'static str) -> Error {
    Error::InvalidArgument {
        what,
        why: "is NULL".into(),
    }
}

/// The common shape of the `int`-returning slots: a live handle, the body, one log line on
/// failure. A panic takes the handle to the error path and returns non-zero. The body is safe
/// code: each raw read it needs is its own `unsafe` block, justified by the slot's contract.
///
/// # Safety
/// `handle` is NULL or a value returned by `create` that was not yet given to `destroy`.
unsafe fn with_handle(
    entry: &'static str,
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    body: impl FnOnce(&Arc<Handle>) -> Result<(), Error>,
) -> c_int {
    guard(
        entry,
        || {
            // SAFETY: `handle` is NULL or a live handle (this function's contract).
            if let Some(h) = unsafe { Handle::borrow(handle) } {
                h.core
                    .lock()
                    .fail_now(Error::Internal(format!("a panic in {entry}")));
            }
            FAILURE
        },
        || {
            // SAFETY: `handle` is NULL or a live handle (this function's contract).
            let Some(h) = (unsafe { Handle::borrow(handle) }) else {
                return to_c(entry, "", Err(null_arg("handle")));
            };
            let result = body(&h);
            let context = h.core.lock().context().to_owned();
            to_c(entry, &context, result)
        },
    )
}

/// # Safety
/// `uri`, `scope_id` and `api_version` are each NULL or a NUL-terminated string that stays valid
/// for the call (they are copied); `error_ctx` is never dereferenced, only handed back to
/// `error_cb`.
unsafe fn create(
    flavor: Flavor,
    uri: *const c_char,
    type_: TRANSPORT_HSM_TYPE,
    scope_id: *const c_char,
    api_version: *const c_char,
    error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
    error_ctx: *mut c_void,
) -> PROV_DEVICE_TRANSPORT_HANDLE {
    guard("prov_transport_create", ptr::null_mut, || {
        let made = (|| {
            // SAFETY: `uri` is NULL or NUL-terminated (this function's contract).
            let uri = unsafe { required_str(uri, "uri") }?;
            // SAFETY: `scope_id` is NULL or NUL-terminated (this function's contract).
            let scope = unsafe { required_str(scope_id, "scope_id") }?;
            // SAFETY: `api_version` is NULL or NUL-terminated (this function's contract).
            let api = unsafe { required_str(api_version, "api_version") }?;
            let auth =
                match type_.0 {
                    1 => Auth::X509,
                    2 => Auth::SymmetricKey,
                    0 => return Err(Error::InvalidArgument {
                        what: "type",
                        why:
                            "TPM attestation is not supported over MQTT (use AMQP or HTTP for TPM)"
                                .into(),
                    }),
                    n => {
                        return Err(Error::InvalidArgument {
                            what: "type",
                            why: format!("{n} is not a TRANSPORT_HSM_TYPE"),
                        })
                    }
                };
            Transport::create(flavor, uri, auth, scope, api)
        })();
        match made {
            Ok(core) => Handle::new(core, error_cb, error_ctx).into_raw(),
            Err(e) => {
                crate::error!("", "prov_transport_create: {e}");
                ptr::null_mut()
            }
        }
    })
}

/// # Safety
/// See [`create`].
unsafe extern "C" fn create_mqtt(
    uri: *const c_char,
    type_: TRANSPORT_HSM_TYPE,
    scope_id: *const c_char,
    api_version: *const c_char,
    error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
    error_ctx: *mut c_void,
) -> PROV_DEVICE_TRANSPORT_HANDLE {
    // SAFETY: the caller upholds this slot's contract, which is `create`'s.
    unsafe {
        create(
            Flavor::Tls,
            uri,
            type_,
            scope_id,
            api_version,
            error_cb,
            error_ctx,
        )
    }
}

/// # Safety
/// See [`create`].
unsafe extern "C" fn create_mqtt_ws(
    uri: *const c_char,
    type_: TRANSPORT_HSM_TYPE,
    scope_id: *const c_char,
    api_version: *const c_char,
    error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
    error_ctx: *mut c_void,
) -> PROV_DEVICE_TRANSPORT_HANDLE {
    // SAFETY: the caller upholds this slot's contract, which is `create`'s.
    unsafe {
        create(
            Flavor::WebSocket,
            uri,
            type_,
            scope_id,
            api_version,
            error_cb,
            error_ctx,
        )
    }
}

/// Frees the handle; no callback runs after it. NULL is a no-op. Returns once a resolver thread
/// with nothing left to look up has ended (README "Threads"), so that an application may exit
/// at once.
///
/// # Safety
/// `handle` is NULL or a value returned by `create` that was not yet given to `destroy`; it
/// must not be used afterwards (the handle's tag catches some such mistakes: best effort, not
/// a guarantee).
unsafe extern "C" fn destroy(handle: PROV_DEVICE_TRANSPORT_HANDLE) {
    guard(
        "prov_transport_destroy",
        || (),
        || {
            // SAFETY: `handle` is NULL or a live handle (this function's contract).
            if let Some(h) = unsafe { Handle::release(handle) } {
                h.core.lock().close();
            }
            crate::net::settle_resolver_threads();
        },
    )
}

/// Takes the registration id and the callbacks; the connection starts on the next `dowork`.
///
/// # Safety
/// `handle` as in [`destroy`]. `registration_id` is NULL or a NUL-terminated string valid for
/// the call (it is copied). `ek` and `srk` must be NULL (they are only compared with NULL,
/// never read). The callbacks are NULL or functions with the SDK's signatures that stay
/// callable until `close` or `destroy`; the contexts are never dereferenced, only handed back
/// to their callbacks.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn open(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    registration_id: *const c_char,
    ek: BUFFER_HANDLE,
    srk: BUFFER_HANDLE,
    data_callback: PROV_DEVICE_TRANSPORT_REGISTER_CALLBACK,
    user_ctx: *mut c_void,
    status_cb: PROV_DEVICE_TRANSPORT_STATUS_CALLBACK,
    status_ctx: *mut c_void,
    reg_challenge_cb: PROV_TRANSPORT_CHALLENGE_CALLBACK,
    challenge_ctx: *mut c_void,
) -> c_int {
    let body = |h: &Arc<Handle>| {
        // SAFETY: `registration_id` is NULL or NUL-terminated (this function's contract).
        let registration_id = unsafe { required_str(registration_id, "registration_id") }?;
        data_callback.ok_or_else(|| null_arg("data_callback"))?;
        status_cb.ok_or_else(|| null_arg("status_cb"))?;
        if !ek.is_null() || !srk.is_null() {
            return Err(Error::InvalidArgument {
                what: "ek/srk",
                why: "must be NULL: TPM keys are not supported over MQTT".into(),
            });
        }
        let mut core = h.core.lock();
        if core.session().settings().auth == Auth::SymmetricKey && reg_challenge_cb.is_none() {
            return Err(Error::InvalidArgument {
                what: "reg_challenge_cb",
                why: "is NULL but this handle authenticates with a symmetric key".into(),
            });
        }
        core.open(registration_id)?;
        let mut cbs = h.callbacks.lock();
        cbs.data_cb = data_callback;
        cbs.user_ctx = user_ctx;
        cbs.status_cb = status_cb;
        cbs.status_ctx = status_ctx;
        cbs.challenge_cb = reg_challenge_cb;
        cbs.challenge_ctx = challenge_ctx;
        Ok(())
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_open", handle, body) }
}

/// Disconnects and forgets the registration and its operation; a later `open` starts afresh.
///
/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn close(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int {
    let body = |h: &Arc<Handle>| {
        h.core.lock().close();
        Ok(())
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_close", handle, body) }
}

/// Starts a registration; the request goes out once the connection is up.
///
/// # Safety
/// `handle` as in [`destroy`]. The callbacks are NULL or functions with the SDK's signatures
/// that stay callable until `close` or `destroy`; each `malloc`s what it returns, and the
/// transport frees it. `json_ctx` is never dereferenced, only handed back to them.
unsafe extern "C" fn register_device(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    json_parse_cb: PROV_TRANSPORT_JSON_PARSE,
    json_create_cb: PROV_TRANSPORT_CREATE_JSON_PAYLOAD,
    json_ctx: *mut c_void,
) -> c_int {
    let body = |h: &Arc<Handle>| {
        json_parse_cb.ok_or_else(|| null_arg("json_parse_cb"))?;
        json_create_cb.ok_or_else(|| null_arg("json_create_cb"))?;
        h.core.lock().register()?;
        let mut cbs = h.callbacks.lock();
        cbs.json_parse_cb = json_parse_cb;
        cbs.json_create_cb = json_create_cb;
        cbs.json_ctx = json_ctx;
        Ok(())
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_register", handle, body) }
}

/// Asks for the status of the operation the service assigned.
///
/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn get_operation_status(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int {
    let body = |h: &Arc<Handle>| h.core.lock().get_operation_status();
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_get_op_status", handle, body) }
}

/// Runs callbacks that are due; never blocks on the network. NULL is a no-op.
///
/// # Safety
/// `handle` as in [`destroy`]. The callbacks given to `open` and `register` are called from
/// here, on the caller's thread; they may call `close` or `destroy` on this handle.
unsafe extern "C" fn dowork(handle: PROV_DEVICE_TRANSPORT_HANDLE) {
    if handle.is_null() {
        return;
    }
    let body = |h: &Arc<Handle>| {
        run_callouts(h);
        Ok(())
    };
    // SAFETY: `handle` is a live handle (this function's contract; NULL returned above).
    unsafe { with_handle("prov_transport_dowork", handle, body) };
}

/// Turns the packet trace on or off.
///
/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn set_trace(handle: PROV_DEVICE_TRANSPORT_HANDLE, trace_on: bool) -> c_int {
    let body = |h: &Arc<Handle>| {
        h.core.lock().set_trace(trace_on);
        Ok(())
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_set_trace", handle, body) }
}

/// Sets (or replaces) the device's certificate chain and private key, both PEM.
///
/// # Safety
/// `handle` as in [`destroy`]; `certificate` and `private_key` are each NULL or a
/// NUL-terminated string valid for the call (both are copied).
unsafe extern "C" fn x509_cert(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    certificate: *const c_char,
    private_key: *const c_char,
) -> c_int {
    let body = |h: &Arc<Handle>| {
        // SAFETY: `certificate` is NULL or NUL-terminated (this function's contract).
        let certificate = unsafe { required_str(certificate, "certificate") }?;
        // SAFETY: `private_key` is NULL or NUL-terminated (this function's contract).
        let key = unsafe { required_str(private_key, "private_key") }?;
        h.core.lock().set_x509(certificate, key)
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_x509_cert", handle, body) }
}

/// Sets (or replaces) the CA certificates (PEM) the server's certificate is checked against.
///
/// # Safety
/// `handle` as in [`destroy`]; `certificate` is NULL or a NUL-terminated string valid for the
/// call (it is copied).
unsafe extern "C" fn trusted_cert(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    certificate: *const c_char,
) -> c_int {
    let body = |h: &Arc<Handle>| {
        // SAFETY: `certificate` is NULL or NUL-terminated (this function's contract).
        let pem = unsafe { required_str(certificate, "certificate") }?;
        h.core.lock().set_trusted(pem)
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_trusted_cert", handle, body) }
}

/// # Safety
/// `options` is NULL or points to a valid `HTTP_PROXY_OPTIONS` whose strings are NULL or
/// NUL-terminated, all valid for the call (they are copied).
unsafe fn apply_proxy(h: &Handle, options: *const HTTP_PROXY_OPTIONS) -> Result<(), Error> {
    // SAFETY: `options` is NULL or points to a valid struct (this function's contract).
    let options = unsafe { options.as_ref() }.ok_or_else(|| null_arg("proxy_option"))?;
    // SAFETY: the struct's strings are NULL or NUL-terminated (this function's contract).
    let host = unsafe { required_str(options.host_address, "proxy host_address") }?;
    // SAFETY: as for `host_address`.
    let user = unsafe { optional_str(options.username, "proxy username") }?;
    // SAFETY: as for `host_address`.
    let password = unsafe { optional_str(options.password, "proxy password") }?;
    let credentials = match (user, password) {
        (Some(u), Some(p)) => Some((u.to_owned(), Secret::new(p.to_owned()))),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidArgument {
                what: "proxy username/password",
                why: "give both or neither".into(),
            })
        }
    };
    h.core.lock().set_proxy(host, options.port, credentials)
}

/// Sets (or replaces) the HTTP CONNECT proxy the connection goes through.
///
/// # Safety
/// `handle` as in [`destroy`]; `proxy_option` as in [`apply_proxy`].
unsafe extern "C" fn set_proxy(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    proxy_option: *const HTTP_PROXY_OPTIONS,
) -> c_int {
    // SAFETY: `proxy_option` is NULL or valid (this function's contract).
    let body = |h: &Arc<Handle>| unsafe { apply_proxy(h, proxy_option) };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_set_proxy", handle, body) }
}

/// Sets one of the options in `crate::options::OPTIONS`.
///
/// # Safety
/// `handle` as in [`destroy`]; `option_name` is NULL or a NUL-terminated string; `value` is
/// NULL or points to the C type the option's [`Kind`] names (`uint32_t`, `int`, `bool`, a
/// NUL-terminated string, an `HTTP_PROXY_OPTIONS`, a `PROV_MQTT_REGISTRATION_INFO_HOOK`),
/// valid for the call; NULL removes what a [`options::nullable`] option set. Values are
/// copied; of a hook, its callback must stay callable and its context is kept (never
/// dereferenced, only handed back) until the hook is replaced or removed, or `destroy`.
unsafe extern "C" fn set_option(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    option_name: *const c_char,
    value: *const c_void,
) -> c_int {
    let body = |h: &Arc<Handle>| {
        // SAFETY: `option_name` is NULL or NUL-terminated (this function's contract).
        let name = unsafe { required_str(option_name, "option_name") }?;
        #[cfg(test)]
        if name == "test_panic" {
            panic!("forced by a test");
        }
        let setting = match options::check(name, value.is_null())? {
            // SAFETY: non-NULL and points to an `HTTP_PROXY_OPTIONS` for this option (the
            // contract), which is what `apply_proxy` needs.
            Kind::Proxy => return unsafe { apply_proxy(h, value.cast()) },
            // SAFETY: NULL or a `PROV_MQTT_REGISTRATION_INFO_HOOK` (the contract).
            Kind::Hook => unsafe { apply_hook(h, value.cast()) }?,
            // SAFETY: NULL only for a nullable option (checked), else the option's C type.
            kind => unsafe { read_value(name, kind, value) }?,
        };
        h.core.lock().apply(setting)
    };
    // SAFETY: `handle` is NULL or a live handle (this function's contract).
    unsafe { with_handle("prov_transport_set_option", handle, body) }
}

/// An option value of a plain kind (number, bool, string) as a [`Setting`].
///
/// # Safety
/// `value` points to the C type `kind` names, valid for the call; NULL only for a string option
/// that [`options::nullable`] allows.
unsafe fn read_value(name: &str, kind: Kind, value: *const c_void) -> Result<Setting, Error> {
    match kind {
        Kind::U32 => {
            // SAFETY: non-NULL and points to a `uint32_t` for this option (the contract);
            // read unaligned, as a C caller may pass any address.
            let n = unsafe { value.cast::<u32>().read_unaligned() };
            options::number(name, i64::from(n))
        }
        Kind::Int => {
            // SAFETY: non-NULL and points to an `int` for this option (the contract).
            let n = unsafe { value.cast::<c_int>().read_unaligned() };
            options::number(name, i64::from(n))
        }
        Kind::Bool => {
            // SAFETY: non-NULL and points to a C `bool` for this option (the contract);
            // read as a byte, so a value other than 0 or 1 is not an invalid Rust bool.
            let b = unsafe { value.cast::<u8>().read() };
            Ok(Setting::Trace(b != 0))
        }
        Kind::Str => {
            // SAFETY: NULL (only for a nullable option) or NUL-terminated (the contract).
            let text = unsafe { optional_str(value.cast(), "value") }?;
            options::text(name, text)
        }
        Kind::Proxy | Kind::Hook => Err(Error::Internal(format!(
            "option {name:?} is not a plain value"
        ))),
    }
}

/// `registration_info_hook`: copies the hook (NULL removes it) into the handle's callbacks.
///
/// # Safety
/// `value` is NULL or points to a `PROV_MQTT_REGISTRATION_INFO_HOOK`, valid for the call.
unsafe fn apply_hook(
    h: &Arc<Handle>,
    value: *const PROV_MQTT_REGISTRATION_INFO_HOOK,
) -> Result<Setting, Error> {
    let hook = match value.is_null() {
        true => None,
        // SAFETY: non-NULL and points to a hook (the contract); copied, read unaligned.
        false => Some(unsafe { value.read_unaligned() }),
    };
    if hook.is_some_and(|hook| hook.callback.is_none()) {
        return Err(Error::InvalidArgument {
            what: "registration_info_hook",
            why: "its callback is NULL (pass NULL as the value to remove the hook)".into(),
        });
    }
    h.callbacks.lock().info_hook = hook.unwrap_or(PROV_MQTT_REGISTRATION_INFO_HOOK {
        callback: None,
        context: ptr::null_mut(),
    });
    Ok(Setting::ReportInfo(hook.is_some()))
}

const fn table(create: pfprov_transport_create) -> PROV_DEVICE_TRANSPORT_PROVIDER {
    PROV_DEVICE_TRANSPORT_PROVIDER {
        prov_transport_create: create,
        prov_transport_destroy: Some(destroy),
        prov_transport_open: Some(open),
        prov_transport_close: Some(close),
        prov_transport_register: Some(register_device),
        prov_transport_get_op_status: Some(get_operation_status),
        prov_transport_dowork: Some(dowork),
        prov_transport_set_trace: Some(set_trace),
        prov_transport_x509_cert: Some(x509_cert),
        prov_transport_trusted_cert: Some(trusted_cert),
        prov_transport_set_proxy: Some(set_proxy),
        prov_transport_set_option: Some(set_option),
    }
}

static MQTT: PROV_DEVICE_TRANSPORT_PROVIDER = table(Some(create_mqtt));
static MQTT_WS: PROV_DEVICE_TRANSPORT_PROVIDER = table(Some(create_mqtt_ws));

/// The MQTT-over-TLS provider table (port 8883).
///
/// # Safety
/// Safe to call from any thread at any time. The table is static: never write to it or free
/// it. Each slot's own contract is in docs/spec/abi.md.
#[no_mangle]
pub extern "C" fn Prov_Device_MQTT_Protocol() -> *const PROV_DEVICE_TRANSPORT_PROVIDER {
    &MQTT
}

/// The MQTT-over-WebSocket provider table (port 443, path `/$iothub/websocket`).
///
/// # Safety
/// As `Prov_Device_MQTT_Protocol`.
#[no_mangle]
pub extern "C" fn Prov_Device_MQTT_WS_Protocol() -> *const PROV_DEVICE_TRANSPORT_PROVIDER {
    &MQTT_WS
}

/// The MQTT-over-TLS table under the requirement documents' name.
///
/// # Safety
/// As `Prov_Device_MQTT_Protocol` (it returns the same table).
#[no_mangle]
pub extern "C" fn PROV_MQTT_Protocol() -> *const PROV_TRANSPORT_PROVIDER {
    &MQTT
}

/// The MQTT-over-WebSocket table under the requirement documents' name.
///
/// # Safety
/// As `Prov_Device_MQTT_Protocol` (it returns the same table as `Prov_Device_MQTT_WS_Protocol`).
#[no_mangle]
pub extern "C" fn PROV_MQTT_WS_Protocol() -> *const PROV_TRANSPORT_PROVIDER {
    &MQTT_WS
}
