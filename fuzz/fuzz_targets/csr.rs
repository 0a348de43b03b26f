//! The `certificate_signing_request` text: any input is refused with a reason or accepted as a
//! PKCS#10 request whose CN is then the one the registration id must match.
//! Input: first byte 0 = the rest is DER (base64-encoded here, to reach the DER walk); otherwise
//! the whole input is the option's text.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::csr::{Csr, CsrError};

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((0, der)) => base64::engine::general_purpose::STANDARD.encode(der),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    match Csr::parse(&text) {
        Ok(csr) => {
            // accepted: its own CN matches, another does not, and the one-line form re-parses
            let cn = csr.common_name().to_string();
            assert_eq!(csr.check_registration_id(&cn), Ok(()));
            let other = format!("{cn}x");
            assert!(matches!(
                csr.check_registration_id(&other),
                Err(CsrError::CommonNameMismatch { .. })
            ));
            let again = Csr::parse(csr.base64()).expect("the compact form re-parses");
            assert_eq!(again, csr);
            assert!(!csr.base64().contains(char::is_whitespace));
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
        }
    }
});
