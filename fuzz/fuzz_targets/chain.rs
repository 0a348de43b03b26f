//! `registrationState.issuedCertificateChain` to PEM: any value is refused with a reason or
//! becomes at most 96 KB of PEM that reads back as the same certificates.
//! Input: if it is JSON, that value; otherwise DER elements, each a 2-byte big-endian length then
//! that many bytes (the last takes what is left), base64-encoded into a JSON array of strings
//! (to reach the certificate parser).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::chain::{to_pem, MAX_CHAIN_PEM};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (value, ders) = match serde_json::from_slice::<Value>(data) {
        Ok(v) => (v, None),
        Err(_) => {
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut rest = data;
            while let [hi, lo, tail @ ..] = rest {
                let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                parts.push(&tail[..n]);
                rest = &tail[n..];
            }
            let v = Value::Array(parts.iter().map(|p| Value::String(b64.encode(p))).collect());
            (v, Some(parts))
        }
    };
    match to_pem(&value) {
        Ok(pem) => {
            assert!(pem.len() <= MAX_CHAIN_PEM);
            let back: Vec<CertificateDer> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("our PEM reads back");
            assert_eq!(back.len(), value.as_array().map_or(0, Vec::len));
            if let Some(parts) = ders {
                for (c, p) in back.iter().zip(parts) {
                    assert_eq!(c.as_ref(), p);
                }
            }
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
        }
    }
});
