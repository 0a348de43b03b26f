//! `create` and the option setters through the real C table: any uri / scope / api version /
//! hsm type, then any sequence of `set_option` (known or unknown names, values of the type the
//! name documents, NULL values), `set_proxy`, `set_trace`, `trusted_cert`; plus the numeric
//! range checks (`options::number`) on any name and value. Never a panic or a crash; every call
//! returns 0 or non-zero.
#![no_main]

use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::ptr;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::ffi::*;
use prov_mqtt_transport::options::{self, Kind};

#[derive(Arbitrary, Debug)]
struct Input {
    websocket: bool,
    hsm: u32,
    uri: Vec<u8>,
    scope: Vec<u8>,
    api_version: Vec<u8>,
    calls: Vec<Call>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    /// One of the documented names (index modulo their number).
    Known(u8),
    /// Any bytes (cut at the first NUL, as C would).
    Raw(Vec<u8>),
    Null,
}

#[derive(Arbitrary, Debug)]
struct ProxyArgs {
    host: Option<Vec<u8>>,
    port: i32,
    username: Option<Vec<u8>>,
    password: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum Call {
    /// `set_option(name, value)`; `number` fills a U32/Int/Bool value, `text` a string value,
    /// `proxy` a proxy value; `null_value` passes NULL.
    SetOption {
        name: Name,
        null_value: bool,
        number: u64,
        text: Vec<u8>,
        proxy: ProxyArgs,
    },
    SetProxy(Option<ProxyArgs>),
    SetTrace(bool),
    TrustedCert(Option<Vec<u8>>),
    /// `options::number` directly.
    Number {
        name: Name,
        value: i64,
    },
}

fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("cut at the first NUL")
}

fn name_bytes(name: &Name) -> Option<Vec<u8>> {
    match name {
        Name::Known(i) => Some(
            options::OPTIONS[usize::from(*i) % options::OPTIONS.len()]
                .0
                .as_bytes()
                .to_vec(),
        ),
        Name::Raw(bytes) => Some(bytes.clone()),
        Name::Null => None,
    }
}

/// Owns the strings an HTTP_PROXY_OPTIONS points to.
struct ProxyValue {
    _strings: Vec<CString>,
    options: HTTP_PROXY_OPTIONS,
}

fn proxy_value(args: &ProxyArgs) -> ProxyValue {
    let mut strings = Vec::new();
    let mut ptr_of = |s: &Option<Vec<u8>>| match s {
        Some(bytes) => {
            let c = c_string(bytes);
            let p = c.as_ptr();
            strings.push(c);
            p
        }
        None => ptr::null(),
    };
    let options = HTTP_PROXY_OPTIONS {
        host_address: ptr_of(&args.host),
        port: args.port,
        username: ptr_of(&args.username),
        password: ptr_of(&args.password),
    };
    ProxyValue {
        _strings: strings,
        options,
    }
}

fuzz_target!(|input: Input| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| prov_mqtt_transport::log::set_sink(|_, _| {}));

    // SAFETY: the entry points return static tables.
    let t = unsafe {
        &*if input.websocket {
            Prov_Device_MQTT_WS_Protocol()
        } else {
            Prov_Device_MQTT_Protocol()
        }
    };
    let (uri, scope, api) = (
        c_string(&input.uri),
        c_string(&input.scope),
        c_string(&input.api_version),
    );
    // SAFETY: NUL-terminated strings; a NULL error callback is allowed.
    let h = unsafe {
        (t.prov_transport_create.unwrap())(
            uri.as_ptr(),
            TRANSPORT_HSM_TYPE(input.hsm),
            scope.as_ptr(),
            api.as_ptr(),
            None,
            ptr::null_mut(),
        )
    };
    // Also exercise the NULL-handle paths when create refused.
    for call in &input.calls {
        match call {
            Call::SetOption {
                name,
                null_value,
                number,
                text,
                proxy,
            } => {
                let name = name_bytes(name).map(|b| c_string(&b));
                let name_ptr = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
                let kind = name
                    .as_ref()
                    .and_then(|n| n.to_str().ok())
                    .and_then(options::kind);
                // The value points to the type the name documents (the caller's contract); an
                // unknown name gets an 8-byte number, which must not be read as anything else.
                let number_value = number.to_ne_bytes();
                let text_value = c_string(text);
                let proxy_value = proxy_value(proxy);
                // a hook without a callback: a valid struct that must be refused (a callback
                // from fuzz input would be called)
                let no_hook = PROV_MQTT_REGISTRATION_INFO_HOOK {
                    callback: None,
                    context: ptr::null_mut(),
                };
                let value: *const c_void = match (null_value, kind) {
                    (true, _) => ptr::null(),
                    (false, Some(Kind::Str)) => text_value.as_ptr().cast(),
                    (false, Some(Kind::Proxy)) => {
                        (&proxy_value.options as *const HTTP_PROXY_OPTIONS).cast()
                    }
                    (false, Some(Kind::Hook)) => {
                        (&no_hook as *const PROV_MQTT_REGISTRATION_INFO_HOOK).cast()
                    }
                    (false, _) => number_value.as_ptr().cast(),
                };
                // SAFETY: NULL or valid pointers of the documented type.
                let rc = unsafe { (t.prov_transport_set_option.unwrap())(h, name_ptr, value) };
                // NULL is refused except where it removes what the option set
                let null_refused = *null_value
                    && !name
                        .as_ref()
                        .and_then(|n| n.to_str().ok())
                        .is_some_and(options::nullable);
                let hook_without_callback = !*null_value && kind == Some(Kind::Hook);
                if h.is_null()
                    || name.is_none()
                    || kind.is_none()
                    || null_refused
                    || hook_without_callback
                {
                    assert_ne!(
                        rc, 0,
                        "refused: no handle, no/unknown name, NULL value or no callback"
                    );
                }
            }
            Call::SetProxy(args) => {
                let value = args.as_ref().map(proxy_value);
                let p = value
                    .as_ref()
                    .map_or(ptr::null(), |v| &v.options as *const HTTP_PROXY_OPTIONS);
                // SAFETY: NULL or a valid struct.
                let rc = unsafe { (t.prov_transport_set_proxy.unwrap())(h, p) };
                if h.is_null() || p.is_null() {
                    assert_ne!(rc, 0);
                }
            }
            Call::SetTrace(on) => {
                // SAFETY: NULL or a live handle.
                let rc = unsafe { (t.prov_transport_set_trace.unwrap())(h, *on) };
                assert_eq!(rc == 0, !h.is_null());
            }
            Call::TrustedCert(pem) => {
                let pem = pem.as_deref().map(c_string);
                let p: *const c_char = pem.as_ref().map_or(ptr::null(), |c| c.as_ptr());
                // SAFETY: NULL or a NUL-terminated string.
                let rc = unsafe { (t.prov_transport_trusted_cert.unwrap())(h, p) };
                if h.is_null() || p.is_null() {
                    assert_ne!(rc, 0);
                }
            }
            Call::Number { name, value } => {
                let name = name_bytes(name).unwrap_or_default();
                let name = String::from_utf8_lossy(&name);
                if let Err(e) = options::number(&name, *value) {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    // SAFETY: NULL or the live handle from create; not used afterwards.
    unsafe { (t.prov_transport_destroy.unwrap())(h) };
});
