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
/// failure. A panic takes the handle to the error path and returns non-zero.
///
/// # Safety
/// `handle` is NULL or a live handle from `create`.
unsafe fn with_handle(
    entry: &'static str,
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    body: impl FnOnce(&Arc<Handle>) -> Result<(), Error>,
) -> c_int {
    guard(
        entry,
        || {
            // SAFETY: same contract as the entry point.
            if let Some(h) = unsafe { Handle::borrow(handle) } {
                h.core
                    .lock()
                    .fail_now(Error::Internal(format!("a panic in {entry}")));
            }
            FAILURE
        },
        || {
            // SAFETY: per the contract.
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
/// Strings are NULL or NUL-terminated; `error_ctx` is handed back untouched.
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
            // SAFETY: per the contract.
            let (uri, scope, api) = unsafe {
                (
                    required_str(uri, "uri")?,
                    required_str(scope_id, "scope_id")?,
                    required_str(api_version, "api_version")?,
                )
            };
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
    // SAFETY: forwarded contract.
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
    // SAFETY: forwarded contract.
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

/// Frees the handle; no callback runs after it. NULL is a no-op.
///
/// # Safety
/// `handle` is NULL or a live handle; it must not be used afterwards.
unsafe extern "C" fn destroy(handle: PROV_DEVICE_TRANSPORT_HANDLE) {
    guard(
        "prov_transport_destroy",
        || (),
        || {
            // SAFETY: per the contract.
            if let Some(h) = unsafe { Handle::release(handle) } {
                h.core.lock().close();
            }
        },
    )
}

/// # Safety
/// `handle` as in [`destroy`]; strings NUL-terminated; contexts handed back untouched.
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
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_open", handle, |h| {
            let registration_id = required_str(registration_id, "registration_id")?;
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
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn close(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_close", handle, |h| {
            h.core.lock().close();
            Ok(())
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`]; `json_ctx` handed back untouched.
unsafe extern "C" fn register_device(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    json_parse_cb: PROV_TRANSPORT_JSON_PARSE,
    json_create_cb: PROV_TRANSPORT_CREATE_JSON_PAYLOAD,
    json_ctx: *mut c_void,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_register", handle, |h| {
            json_parse_cb.ok_or_else(|| null_arg("json_parse_cb"))?;
            json_create_cb.ok_or_else(|| null_arg("json_create_cb"))?;
            h.core.lock().register()?;
            let mut cbs = h.callbacks.lock();
            cbs.json_parse_cb = json_parse_cb;
            cbs.json_create_cb = json_create_cb;
            cbs.json_ctx = json_ctx;
            Ok(())
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn get_operation_status(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_get_op_status", handle, |h| {
            h.core.lock().get_operation_status()
        })
    }
}

/// Runs callbacks that are due; never blocks on the network. NULL is a no-op.
///
/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn dowork(handle: PROV_DEVICE_TRANSPORT_HANDLE) {
    if handle.is_null() {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_dowork", handle, |h| {
            run_callouts(h);
            Ok(())
        })
    };
}

/// # Safety
/// `handle` as in [`destroy`].
unsafe extern "C" fn set_trace(handle: PROV_DEVICE_TRANSPORT_HANDLE, trace_on: bool) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_set_trace", handle, |h| {
            h.core.lock().set_trace(trace_on);
            Ok(())
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`]; strings NUL-terminated.
unsafe extern "C" fn x509_cert(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    certificate: *const c_char,
    private_key: *const c_char,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_x509_cert", handle, |h| {
            let certificate = required_str(certificate, "certificate")?;
            let key = required_str(private_key, "private_key")?;
            h.core.lock().set_x509(certificate, key)
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`]; `certificate` NUL-terminated.
unsafe extern "C" fn trusted_cert(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    certificate: *const c_char,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_trusted_cert", handle, |h| {
            let pem = required_str(certificate, "certificate")?;
            h.core.lock().set_trusted(pem)
        })
    }
}

/// # Safety
/// `options` is NULL or points to a valid `HTTP_PROXY_OPTIONS` whose strings are NULL or
/// NUL-terminated.
unsafe fn apply_proxy(h: &Handle, options: *const HTTP_PROXY_OPTIONS) -> Result<(), Error> {
    // SAFETY: per the contract.
    let options = unsafe { options.as_ref() }.ok_or_else(|| null_arg("proxy_option"))?;
    // SAFETY: per the contract.
    let (host, user, password) = unsafe {
        (
            required_str(options.host_address, "proxy host_address")?,
            optional_str(options.username, "proxy username")?,
            optional_str(options.password, "proxy password")?,
        )
    };
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

/// # Safety
/// `handle` as in [`destroy`]; `proxy_option` as in [`apply_proxy`].
unsafe extern "C" fn set_proxy(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    proxy_option: *const HTTP_PROXY_OPTIONS,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_set_proxy", handle, |h| {
            apply_proxy(h, proxy_option)
        })
    }
}

/// # Safety
/// `handle` as in [`destroy`]; `value` points to the type the option documents.
unsafe extern "C" fn set_option(
    handle: PROV_DEVICE_TRANSPORT_HANDLE,
    option_name: *const c_char,
    value: *const c_void,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        with_handle("prov_transport_set_option", handle, |h| {
            let name = required_str(option_name, "option_name")?;
            #[cfg(test)]
            if name == "test_panic" {
                panic!("forced by a test");
            }
            let kind = options::kind(name).ok_or_else(|| Error::InvalidArgument {
                what: "option_name",
                why: format!(
                    "{name:?} is not supported (supported: {})",
                    options::OPTIONS
                        .iter()
                        .map(|(n, _, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            if value.is_null() {
                return Err(Error::InvalidArgument {
                    what: "value",
                    why: format!("is NULL for {name:?}"),
                });
            }
            let setting = match kind {
                Kind::U32 => {
                    options::number(name, i64::from(value.cast::<u32>().read_unaligned()))?
                }
                Kind::Int => {
                    options::number(name, i64::from(value.cast::<c_int>().read_unaligned()))?
                }
                Kind::Bool => Setting::Trace(value.cast::<u8>().read() != 0),
                Kind::Str => Setting::TrustedCerts(required_str(value.cast(), "value")?.to_owned()),
                Kind::Proxy => return apply_proxy(h, value.cast()),
            };
            h.core.lock().apply(setting)
        })
    }
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
#[no_mangle]
pub extern "C" fn Prov_Device_MQTT_Protocol() -> *const PROV_DEVICE_TRANSPORT_PROVIDER {
    &MQTT
}

/// The MQTT-over-WebSocket provider table (port 443, path `/$iothub/websocket`).
#[no_mangle]
pub extern "C" fn Prov_Device_MQTT_WS_Protocol() -> *const PROV_DEVICE_TRANSPORT_PROVIDER {
    &MQTT_WS
}

/// The MQTT-over-TLS table under the requirement documents' name.
#[no_mangle]
pub extern "C" fn PROV_MQTT_Protocol() -> *const PROV_TRANSPORT_PROVIDER {
    &MQTT
}

/// The MQTT-over-WebSocket table under the requirement documents' name.
#[no_mangle]
pub extern "C" fn PROV_MQTT_WS_Protocol() -> *const PROV_TRANSPORT_PROVIDER {
    &MQTT_WS
}
