//! What the library changes in a caller's bodies and reads from a reply (issue 13): adding
//! `"csr"` to any register body either refuses it with a reason or yields a JSON object whose
//! `csr` is ours (or the body untouched when it had one); taking `"csr"` out of any poll body
//! leaves no `csr`; reading any reply for the registration details never panics, and an issued
//! chain it gives back is PEM within the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::{chain, info, register_body};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match register_body::with_csr(data, "TUlJ") {
        Ok(out) => {
            let v: Value = serde_json::from_slice(&out).expect("the output is JSON");
            let had = serde_json::from_slice::<Value>(data).unwrap()["csr"].clone();
            match had {
                Value::Null if v.get("csr").is_some_and(|c| c == "TUlJ") => {}
                Value::Null => panic!("csr not added"),
                _ => assert_eq!(out, data, "a body with csr passes untouched"),
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let polled = register_body::without_csr(data.to_vec());
    if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&polled) {
        assert!(!o.contains_key("csr"), "a poll body keeps no csr");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(details) = info::assignment(200, text) {
            if let Some(pem) = details.issued_certificate_chain {
                assert!(pem.len() <= chain::MAX_CHAIN_PEM);
                assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
            }
        }
    }
});
