//! `repr(C)` mirrors of the SDK's provisioning transport types (docs/spec/abi.md), with the
//! SDK's names so that the generated header reads like the SDK's own.

use std::os::raw::{c_char, c_int, c_long, c_uchar, c_void};

/// Opaque per-connection object returned by `prov_transport_create`.
pub type PROV_DEVICE_TRANSPORT_HANDLE = *mut c_void;

/// c-shared-utility's byte buffer (opaque here; freed with its `BUFFER_delete`).
#[allow(dead_code)]
pub struct BUFFER_TAG {
    _opaque: [u8; 0],
}

/// A c-shared-utility `BUFFER_HANDLE`.
pub type BUFFER_HANDLE = *mut BUFFER_TAG;

/// c-shared-utility's HTTP proxy settings.
#[repr(C)]
pub struct HTTP_PROXY_OPTIONS {
    pub host_address: *const c_char,
    pub port: c_int,
    /// NULL, or set together with `password`.
    pub username: *const c_char,
    pub password: *const c_char,
}

/// The device's attestation type. Declared in the header as the SDK's C enum
/// (`TRANSPORT_HSM_TYPE_TPM` 0, `_X509` 1, `_SYMM_KEY` 2); received here as its integer so that
/// an out-of-range value from C is refused rather than undefined behaviour.
/// cbindgen:ignore
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TRANSPORT_HSM_TYPE(pub u32);

/// The outcome given to the register callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PROV_DEVICE_TRANSPORT_RESULT {
    PROV_DEVICE_TRANSPORT_RESULT_OK,
    PROV_DEVICE_TRANSPORT_RESULT_UNAUTHORIZED,
    PROV_DEVICE_TRANSPORT_RESULT_ERROR,
}

/// The registration status given to the status callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PROV_DEVICE_TRANSPORT_STATUS {
    PROV_DEVICE_TRANSPORT_STATUS_CONNECTED,
    PROV_DEVICE_TRANSPORT_STATUS_AUTHENTICATED,
    PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED,
    PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING,
    PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED,
    PROV_DEVICE_TRANSPORT_STATUS_BLACKLISTED,
    PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT,
    PROV_DEVICE_TRANSPORT_STATUS_ERROR,
    PROV_DEVICE_TRANSPORT_STATUS_DISABLED,
}

/// The error given to the error callback passed to `create`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PROV_DEVICE_TRANSPORT_ERROR {
    PROV_DEVICE_ERROR_KEY_FAIL,
    PROV_DEVICE_ERROR_KEY_UNAUTHORIZED,
    PROV_DEVICE_ERROR_MEMORY,
}

/// The details of one registration outcome (`PROV_MQTT_REGISTRATION_INFO`), given to the
/// `registration_info_hook`. Declared in the header verbatim from cbindgen.toml (with the
/// `_TAG` struct names the issue fixes), so cbindgen skips this mirror.
/// cbindgen:ignore
#[repr(C)]
pub struct PROV_MQTT_REGISTRATION_INFO {
    pub issued_certificate_chain: *const c_char,
    pub connection_profile: *const c_char,
    pub substatus: *const c_char,
    pub etag: *const c_char,
    pub dps_status: c_int,
    pub error_code: c_long,
    pub tracking_id: *const c_char,
    pub error_message: *const c_char,
}

/// `PROV_MQTT_REGISTRATION_INFO_CALLBACK`.
/// cbindgen:ignore
pub type PROV_MQTT_REGISTRATION_INFO_CALLBACK =
    Option<unsafe extern "C" fn(info: *const PROV_MQTT_REGISTRATION_INFO, context: *mut c_void)>;

/// `PROV_MQTT_REGISTRATION_INFO_HOOK`: the value of the `registration_info_hook` option.
/// cbindgen:ignore
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PROV_MQTT_REGISTRATION_INFO_HOOK {
    pub callback: PROV_MQTT_REGISTRATION_INFO_CALLBACK,
    pub context: *mut c_void,
}

/// The record the caller's parse callback allocates with `malloc`; the transport frees it
/// (and its members, by `prov_status`) with `free` / `BUFFER_delete`.
#[repr(C)]
pub struct PROV_JSON_INFO {
    pub prov_status: PROV_DEVICE_TRANSPORT_STATUS,
    pub operation_id: *mut c_char,
    pub authorization_key: BUFFER_HANDLE,
    pub key_name: *mut c_char,
    pub iothub_uri: *mut c_char,
    pub device_id: *mut c_char,
}

/// Called once with the registration's outcome.
pub type PROV_DEVICE_TRANSPORT_REGISTER_CALLBACK = Option<
    unsafe extern "C" fn(
        transport_result: PROV_DEVICE_TRANSPORT_RESULT,
        iothub_key: BUFFER_HANDLE,
        assigned_hub: *const c_char,
        device_id: *const c_char,
        user_ctx: *mut c_void,
    ),
>;
/// Called on every status change, with the retry interval in seconds.
pub type PROV_DEVICE_TRANSPORT_STATUS_CALLBACK = Option<
    unsafe extern "C" fn(
        transport_status: PROV_DEVICE_TRANSPORT_STATUS,
        retry_interval: u32,
        user_ctx: *mut c_void,
    ),
>;
/// Returns a `malloc`ed SAS token (freed by the transport).
pub type PROV_TRANSPORT_CHALLENGE_CALLBACK = Option<
    unsafe extern "C" fn(
        nonce: *const c_uchar,
        nonce_len: usize,
        key_name: *const c_char,
        user_ctx: *mut c_void,
    ) -> *mut c_char,
>;
/// Parses a reply into a `malloc`ed record (freed by the transport).
pub type PROV_TRANSPORT_JSON_PARSE = Option<
    unsafe extern "C" fn(
        json_document: *const c_char,
        user_ctx: *mut c_void,
    ) -> *mut PROV_JSON_INFO,
>;
/// Returns the `malloc`ed request body (freed by the transport).
pub type PROV_TRANSPORT_CREATE_JSON_PAYLOAD = Option<
    unsafe extern "C" fn(
        ek_value: *const c_char,
        srk_value: *const c_char,
        user_ctx: *mut c_void,
    ) -> *mut c_char,
>;
/// Reports key and authorization failures.
pub type PROV_TRANSPORT_ERROR_CALLBACK = Option<
    unsafe extern "C" fn(transport_error: PROV_DEVICE_TRANSPORT_ERROR, user_context: *mut c_void),
>;

pub type pfprov_transport_create = Option<
    unsafe extern "C" fn(
        uri: *const c_char,
        type_: TRANSPORT_HSM_TYPE,
        scope_id: *const c_char,
        api_version: *const c_char,
        error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
        error_ctx: *mut c_void,
    ) -> PROV_DEVICE_TRANSPORT_HANDLE,
>;
pub type pfprov_transport_destroy =
    Option<unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE)>;
pub type pfprov_transport_open = Option<
    unsafe extern "C" fn(
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
    ) -> c_int,
>;
pub type pfprov_transport_close =
    Option<unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int>;
pub type pfprov_transport_register_device = Option<
    unsafe extern "C" fn(
        handle: PROV_DEVICE_TRANSPORT_HANDLE,
        json_parse_cb: PROV_TRANSPORT_JSON_PARSE,
        json_create_cb: PROV_TRANSPORT_CREATE_JSON_PAYLOAD,
        json_ctx: *mut c_void,
    ) -> c_int,
>;
pub type pfprov_transport_get_operation_status =
    Option<unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE) -> c_int>;
pub type pfprov_transport_dowork =
    Option<unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE)>;
pub type pfprov_transport_set_trace =
    Option<unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE, trace_on: bool) -> c_int>;
pub type pfprov_transport_set_x509_cert = Option<
    unsafe extern "C" fn(
        handle: PROV_DEVICE_TRANSPORT_HANDLE,
        certificate: *const c_char,
        private_key: *const c_char,
    ) -> c_int,
>;
pub type pfprov_transport_set_trusted_cert = Option<
    unsafe extern "C" fn(handle: PROV_DEVICE_TRANSPORT_HANDLE, certificate: *const c_char) -> c_int,
>;
pub type pfprov_transport_set_proxy = Option<
    unsafe extern "C" fn(
        handle: PROV_DEVICE_TRANSPORT_HANDLE,
        proxy_option: *const HTTP_PROXY_OPTIONS,
    ) -> c_int,
>;
pub type pfprov_transport_set_option = Option<
    unsafe extern "C" fn(
        handle: PROV_DEVICE_TRANSPORT_HANDLE,
        option_name: *const c_char,
        value: *const c_void,
    ) -> c_int,
>;

/// The SDK's provider table: 12 function pointers in this order.
#[repr(C)]
pub struct PROV_DEVICE_TRANSPORT_PROVIDER {
    pub prov_transport_create: pfprov_transport_create,
    pub prov_transport_destroy: pfprov_transport_destroy,
    pub prov_transport_open: pfprov_transport_open,
    pub prov_transport_close: pfprov_transport_close,
    pub prov_transport_register: pfprov_transport_register_device,
    pub prov_transport_get_op_status: pfprov_transport_get_operation_status,
    pub prov_transport_dowork: pfprov_transport_dowork,
    pub prov_transport_set_trace: pfprov_transport_set_trace,
    pub prov_transport_x509_cert: pfprov_transport_set_x509_cert,
    pub prov_transport_trusted_cert: pfprov_transport_set_trusted_cert,
    pub prov_transport_set_proxy: pfprov_transport_set_proxy,
    pub prov_transport_set_option: pfprov_transport_set_option,
}

/// The name of the table in the SDK's 2017 requirement documents (docs/spec/releases.md).
pub type PROV_TRANSPORT_PROVIDER = PROV_DEVICE_TRANSPORT_PROVIDER;

/// A function returning a provider table, as `Prov_Device_LL_Create` takes it.
pub type PROV_DEVICE_TRANSPORT_PROVIDER_FUNCTION =
    Option<extern "C" fn() -> *const PROV_DEVICE_TRANSPORT_PROVIDER>;

#[cfg(all(test, target_pointer_width = "64", not(windows)))]
mod layout {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The header declares these verbatim (cbindgen.toml); the C harness asserts the same LP64
    /// offsets on the header's side (ctest/abi_conformance.c).
    #[test]
    fn the_hook_records_match_the_header() {
        type I = PROV_MQTT_REGISTRATION_INFO;
        assert_eq!(size_of::<I>(), 64);
        assert_eq!(
            [
                offset_of!(I, issued_certificate_chain),
                offset_of!(I, connection_profile),
                offset_of!(I, substatus),
                offset_of!(I, etag),
                offset_of!(I, dps_status),
                offset_of!(I, error_code),
                offset_of!(I, tracking_id),
                offset_of!(I, error_message),
            ],
            [0, 8, 16, 24, 32, 40, 48, 56]
        );
        type H = PROV_MQTT_REGISTRATION_INFO_HOOK;
        assert_eq!(size_of::<H>(), 16);
        assert_eq!([offset_of!(H, callback), offset_of!(H, context)], [0, 8]);
    }
}
