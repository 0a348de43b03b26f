//! What the library does with an incoming PUBLISH payload before `json_parse_cb`: the size,
//! NUL and UTF-8 checks (`dps::body::check_payload`), then the diagnostics read from error
//! bodies (`ServiceError::from_body`, `operation_status`). Never a panic; an accepted payload
//! always becomes a C string without loss; a diagnostic line stays one line.
#![no_main]

use std::ffi::CString;

use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::body::{self, PayloadError, ServiceError};
use prov_mqtt_transport::dps::MAX_PACKET;

fuzz_target!(|data: &[u8]| {
    match body::check_payload(data) {
        Ok(text) => {
            assert!(data.len() <= MAX_PACKET);
            assert_eq!(text.as_bytes(), data);
            // exactly what ffi::callbacks::parse does with it
            let c = CString::new(text).expect("no NUL in an accepted payload");
            assert_eq!(c.as_bytes().len(), data.len());
            if let Some(e) = ServiceError::from_body(text) {
                let _ = e.to_string();
            }
            let _ = body::operation_status(text);
        }
        Err(PayloadError::TooLarge(n)) => assert!(n > MAX_PACKET),
        Err(e @ PayloadError::EmbeddedNul(at)) => {
            assert_eq!(data[at], 0);
            assert!(!e.to_string().is_empty());
        }
        Err(PayloadError::NotUtf8(at)) => {
            assert!(std::str::from_utf8(&data[..at]).is_ok());
            assert!(std::str::from_utf8(data).is_err());
        }
    }
    // The diagnostics also run on any UTF-8 text, NUL bytes included.
    let lossy = String::from_utf8_lossy(data);
    if let Some(e) = ServiceError::from_body(&lossy) {
        let _ = e.to_string();
    }
    let _ = body::operation_status(&lossy);
});
