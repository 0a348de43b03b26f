//! PEM loading: the trusted CA(s) of `trusted_cert` / `TrustedCerts` and the device's
//! certificate chain and key of `x509_cert`. Any text is refused cleanly or accepted.
//! Input: cert text, a 0xFF separator, key text (the key defaults to the cert text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::net::tls;

fuzz_target!(|data: &[u8]| {
    let (cert, key) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let cert = String::from_utf8_lossy(cert);
    let key = String::from_utf8_lossy(key);
    match tls::trusted_roots(&cert) {
        Ok(roots) => assert!(!roots.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match tls::identity(&cert, &key) {
        Ok(id) => {
            // a usable identity must also make a client configuration
            tls::client_config(None, Some(&id), tls::MinVersion::Tls12)
                .map(drop)
                .or_else(|e| match e {
                    prov_mqtt_transport::Error::TrustStore(_) => Ok(()),
                    other => Err(other),
                })
                .expect("an accepted identity configures TLS");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
