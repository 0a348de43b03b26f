//! The certificate chain DPS issued: `registrationState.issuedCertificateChain`, a JSON array of
//! base64 DER certificates, leaf first. An application gets it as one PEM text, as the SDK's
//! CSR branch gives it. Each element must be a DER X.509 certificate; the PEM is bounded so a
//! hostile reply cannot make us hand a huge string to C.

use base64::Engine as _;
use serde_json::Value;

/// The largest PEM chain we produce: the DPS message limit (96 KB), which no real chain
/// (two or three certificates of about 1 KB) comes near.
pub const MAX_CHAIN_PEM: usize = 96 * 1024;

/// Why an issued chain is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// Not a JSON array.
    NotAnArray,
    /// An empty array.
    Empty,
    /// Element `index` is not a string.
    NotAString(usize),
    /// Element `index` is not base64.
    NotBase64(usize, String),
    /// Element `index` is not a DER X.509 certificate.
    NotACertificate(usize, String),
    /// The PEM chain would exceed [`MAX_CHAIN_PEM`] bytes (at least this many).
    TooLarge(usize),
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainError::NotAnArray => write!(f, "issuedCertificateChain is not a JSON array"),
            ChainError::Empty => write!(f, "issuedCertificateChain is empty"),
            ChainError::NotAString(i) => {
                write!(f, "issuedCertificateChain[{i}] is not a string")
            }
            ChainError::NotBase64(i, why) => {
                write!(f, "issuedCertificateChain[{i}] is not base64: {why}")
            }
            ChainError::NotACertificate(i, why) => write!(
                f,
                "issuedCertificateChain[{i}] is not a DER X.509 certificate: {why}"
            ),
            ChainError::TooLarge(n) => write!(
                f,
                "issuedCertificateChain as PEM is over {n} bytes, beyond the {MAX_CHAIN_PEM}-byte limit"
            ),
        }
    }
}

impl std::error::Error for ChainError {}

/// Turns `issuedCertificateChain` into PEM (`-----BEGIN CERTIFICATE-----` blocks, 64-column
/// base64, LF line ends), in the order given: leaf first.
pub fn to_pem(chain: &Value) -> Result<String, ChainError> {
    let items = chain.as_array().ok_or(ChainError::NotAnArray)?;
    if items.is_empty() {
        return Err(ChainError::Empty);
    }
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let text = item.as_str().ok_or(ChainError::NotAString(i))?;
        // checked before decoding, so an oversized chain costs no decoding work: base64 is
        // never shorter than its PEM body less the line ends
        if out.len() + text.len() > MAX_CHAIN_PEM {
            return Err(ChainError::TooLarge(out.len() + text.len()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| ChainError::NotBase64(i, e.to_string()))?;
        // rustls' own certificate parser (already linked for TLS): strict DER, X.509 v3
        webpki::EndEntityCert::try_from(&rustls_pki_types::CertificateDer::from(der.as_slice()))
            .map_err(|e| ChainError::NotACertificate(i, e.to_string()))?;
        out.push_str(&pem::encode_config(
            &pem::Pem::new("CERTIFICATE", der),
            config,
        ));
        if out.len() > MAX_CHAIN_PEM {
            return Err(ChainError::TooLarge(out.len()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use serde_json::json;

    fn b64(der: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// [leaf, intermediate] DER, as DPS issues them.
    fn issued() -> Vec<Vec<u8>> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "dev1");
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        vec![leaf.der().to_vec(), ca.der().to_vec()]
    }

    #[test]
    fn pem_in_order_that_rustls_reads_back() {
        let ders = issued();
        let pem = to_pem(&json!([b64(&ders[0]), b64(&ders[1])])).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!pem.contains('\r'));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(back, ders);
    }

    #[test]
    fn refusals_name_the_element() {
        let ders = issued();
        let leaf = b64(&ders[0]);
        let cases = [
            (json!({"0": leaf}), ChainError::NotAnArray),
            (json!(leaf), ChainError::NotAnArray),
            (json!([]), ChainError::Empty),
            (json!([leaf, 7]), ChainError::NotAString(1)),
        ];
        for (v, want) in cases {
            assert_eq!(to_pem(&v), Err(want));
        }
        let csr_not_cert = {
            let key = rcgen::KeyPair::generate().unwrap();
            let p = rcgen::CertificateParams::new(vec!["dev1".to_string()]).unwrap();
            b64(p.serialize_request(&key).unwrap().der())
        };
        let truncated = b64(&ders[0][..ders[0].len() - 1]);
        let trailing = b64(&[ders[0].clone(), vec![0]].concat());
        for (i, bad) in [b64(b"not a certificate"), csr_not_cert, truncated, trailing]
            .into_iter()
            .enumerate()
        {
            let e = to_pem(&json!([leaf, bad])).unwrap_err();
            assert!(
                matches!(e, ChainError::NotACertificate(1, _)),
                "case {i}: {e:?}"
            );
            assert!(e
                .to_string()
                .starts_with("issuedCertificateChain[1] is not"));
        }
        assert!(matches!(
            to_pem(&json!(["%%%", leaf])),
            Err(ChainError::NotBase64(0, _))
        ));
        assert!(matches!(
            to_pem(&json!([format!("{leaf}\n")])),
            Err(ChainError::NotBase64(0, _))
        ));
    }

    #[test]
    fn bounded_to_96_kb() {
        let leaf = b64(&issued()[0]);
        let pem_len = to_pem(&json!([leaf])).unwrap().len();
        let fits = MAX_CHAIN_PEM / pem_len;
        let at_limit: Vec<&str> = std::iter::repeat(leaf.as_str()).take(fits).collect();
        assert!(to_pem(&json!(at_limit)).unwrap().len() <= MAX_CHAIN_PEM);
        let over: Vec<&str> = std::iter::repeat(leaf.as_str()).take(fits + 1).collect();
        assert!(matches!(to_pem(&json!(over)), Err(ChainError::TooLarge(n)) if n > MAX_CHAIN_PEM));
        // one huge element is refused before it is decoded
        let huge = "A".repeat(MAX_CHAIN_PEM + 4);
        assert!(matches!(
            to_pem(&json!([huge])),
            Err(ChainError::TooLarge(_))
        ));
    }
}
