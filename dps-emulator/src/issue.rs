//! Certificate issuance: a register request whose body carries `csr` (base64 DER PKCS#10,
//! api-version 2025-07-01-preview or later) gets a leaf certificate signed by the emulator's
//! intermediate CA for the CSR's public key, returned as `issuedCertificateChain`
//! [leaf, intermediate] (base64 DER).
//!
//! The emulator keeps only the CSR's public key and subject CN: its requested extensions are
//! not copied into the leaf, which is a client-authentication certificate like the ones
//! `dps-emulator certs` writes, so the emulator's own X.509 authentication accepts it.

use crate::pki::Pki;
use base64::Engine as _;
use rcgen::{
    Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::{Duration, OffsetDateTime};

/// The first api-version under which DPS accepts `csr` (field facts, §3).
pub const CSR_API_VERSION: &str = "2025-07-01-preview";

/// How long issued certificates live: the service issues for 7 to 90 days.
const VALIDITY_DAYS: i64 = 30;

/// `errorCode` of a CSR that cannot be used: not base64, not a PKCS#10 request, bad signature,
/// unsupported extension, or a subject CN other than the registration id. The service's code
/// for an invalid request body; the message says which.
pub const ERROR_BAD_CSR: u32 = 400004;
/// `errorCode` of a `csr` under an api-version older than [`CSR_API_VERSION`].
pub const ERROR_CSR_API_VERSION: u32 = 400011;
/// `errorCode` when the emulator cannot sign: no intermediate CA key, or signing failed.
pub const ERROR_INTERNAL: u32 = 500000;

/// Why a CSR got no certificate: the reply's status, `errorCode` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status in the reply topic.
    pub status: u16,
    /// `errorCode` in the body.
    pub error_code: u32,
    /// `message` in the body.
    pub message: String,
}

impl Refusal {
    fn bad(message: String) -> Refusal {
        Refusal {
            status: 400,
            error_code: ERROR_BAD_CSR,
            message,
        }
    }
}

/// Is `api_version` at least `min`? Compared by their date part (`YYYY-MM-DD`); a suffix such
/// as `-preview` does not matter. A version without a date is older than every dated one.
pub fn api_version_at_least(api_version: &str, min: &str) -> bool {
    fn date(v: &str) -> Option<&str> {
        let d = v.get(..10)?;
        let ok = d.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
        ok.then_some(d)
    }
    match (date(api_version), date(min)) {
        (Some(a), Some(m)) => a >= m,
        _ => false,
    }
}

/// The intermediate CA, ready to sign.
pub(crate) struct Issuer {
    ca: Option<(Certificate, KeyPair)>,
    intermediate_der: Vec<u8>,
}

impl Issuer {
    /// Reads the intermediate CA of `pki`. Without its key the issuer refuses every CSR with
    /// a 500 (an old certificate directory), but the emulator still serves everything else.
    pub(crate) fn new(pki: &Pki) -> std::io::Result<Issuer> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        };
        let der = CertificateDer::from_pem_slice(pki.intermediate_ca_pem.as_bytes())
            .map_err(|e| bad("intermediate CA certificate", &e))?;
        let ca = match &pki.intermediate_key_pem {
            None => None,
            Some(key_pem) => {
                let key = KeyPair::from_pem(key_pem).map_err(|e| bad("intermediate CA key", &e))?;
                let (_, parsed) = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| bad("intermediate CA certificate", &e))?;
                if parsed.public_key().raw != key.public_key_der().as_slice() {
                    return Err(bad(
                        "intermediate CA key",
                        &"it is not the key of the intermediate CA certificate",
                    ));
                }
                // rcgen signs with a `Certificate` as issuer; one re-made from the real
                // intermediate's parameters (name, key identifier) issues the same fields.
                let cert = CertificateParams::from_ca_cert_der(&der)
                    .and_then(|p| p.self_signed(&key))
                    .map_err(|e| bad("intermediate CA certificate", &e))?;
                Some((cert, key))
            }
        };
        Ok(Issuer {
            ca,
            intermediate_der: der.to_vec(),
        })
    }

    /// Checks `csr_b64` for `regid` under `api_version` and issues a leaf for it. Returns the
    /// chain [leaf, intermediate], base64 DER.
    pub(crate) fn issue(
        &self,
        csr_b64: &str,
        regid: &str,
        api_version: &str,
    ) -> Result<Vec<String>, Refusal> {
        if !api_version_at_least(api_version, CSR_API_VERSION) {
            return Err(Refusal {
                status: 400,
                error_code: ERROR_CSR_API_VERSION,
                message: format!(
                    "csr is not supported under api-version {api_version}; it needs {CSR_API_VERSION} or later"
                ),
            });
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let der = b64
            .decode(csr_b64.trim())
            .map_err(|e| Refusal::bad(format!("csr is not base64: {e}")))?;
        let cn = csr_common_name(&der)?;
        if cn != regid {
            return Err(Refusal::bad(format!(
                "csr subject CN {cn:?} differs from the registration id {regid:?}"
            )));
        }
        let Some((ca_cert, ca_key)) = &self.ca else {
            return Err(Refusal {
                status: 500,
                error_code: ERROR_INTERNAL,
                message: "the emulator has no intermediate-ca-key.pem to sign with (certificate \
                          directory from an older version: run `dps-emulator certs` again)"
                    .into(),
            });
        };
        // from_der also verifies the CSR's signature (proof that the device holds the key)
        let mut req = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(der.as_slice()),
        )
        .map_err(|e| Refusal::bad(format!("csr cannot be used: {e}")))?;
        req.params = leaf_params(&cn);
        let leaf = req.signed_by(ca_cert, ca_key).map_err(|e| Refusal {
            status: 500,
            error_code: ERROR_INTERNAL,
            message: format!("signing the certificate failed: {e}"),
        })?;
        Ok(vec![
            b64.encode(leaf.der()),
            b64.encode(&self.intermediate_der),
        ])
    }
}

/// The subject CN of a DER PKCS#10 request whose signature verifies (parsed with x509-parser,
/// as the TLS side reads certificate CNs).
fn csr_common_name(der: &[u8]) -> Result<String, Refusal> {
    use x509_parser::prelude::FromDer;
    let (rest, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .map_err(|e| Refusal::bad(format!("csr is not a DER PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Refusal::bad(format!(
            "csr has {} bytes after the PKCS#10 request",
            rest.len()
        )));
    }
    req.verify_signature().map_err(|e| {
        Refusal::bad(format!(
            "csr signature does not verify with its own public key: {e}"
        ))
    })?;
    let subject = &req.certification_request_info.subject;
    let cn = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| Refusal::bad("csr subject has no CN".into()))?;
    cn.as_str()
        .map(str::to_string)
        .map_err(|e| Refusal::bad(format!("csr subject CN is not a string: {e}")))
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    // a fresh serial per issuance: renewals with the same key get distinct certificates
    p.serial_number = Some(SerialNumber::from_slice(
        &uuid::Uuid::new_v4().as_bytes()[..],
    ));
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(VALIDITY_DAYS);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(cn: &str) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let csr = p.serialize_request(&key).unwrap();
        (
            base64::engine::general_purpose::STANDARD.encode(csr.der()),
            key,
        )
    }

    #[test]
    fn api_versions_compare_by_date() {
        assert!(api_version_at_least("2025-07-01-preview", CSR_API_VERSION));
        assert!(api_version_at_least("2025-07-01", CSR_API_VERSION));
        assert!(api_version_at_least("2026-11-02-preview", CSR_API_VERSION));
        assert!(!api_version_at_least("2021-06-01", CSR_API_VERSION));
        assert!(!api_version_at_least("2025-06-30-preview", CSR_API_VERSION));
        assert!(!api_version_at_least("latest", CSR_API_VERSION));
        assert!(!api_version_at_least("2025-7-01", CSR_API_VERSION));
    }

    #[test]
    fn issues_for_the_csr_key_and_refuses_the_rest() {
        let pki = Pki::generate(&[]);
        let issuer = Issuer::new(&pki).unwrap();
        let (csr, key) = csr_for("dev1");
        let chain = issuer.issue(&csr, "dev1", CSR_API_VERSION).unwrap();
        assert_eq!(chain.len(), 2);
        let b64 = base64::engine::general_purpose::STANDARD;
        let leaf = b64.decode(&chain[0]).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
        assert_eq!(
            crate::tls::common_name(&CertificateDer::from(leaf.as_slice())).as_deref(),
            Some("dev1")
        );
        let int = CertificateDer::from_pem_slice(pki.intermediate_ca_pem.as_bytes()).unwrap();
        assert_eq!(b64.decode(&chain[1]).unwrap(), int.as_ref());

        let code = |r: Result<Vec<String>, Refusal>| r.map_err(|e| (e.status, e.error_code));
        assert_eq!(
            code(issuer.issue(&csr, "dev2", CSR_API_VERSION)),
            Err((400, ERROR_BAD_CSR))
        );
        assert_eq!(
            code(issuer.issue(&csr, "dev1", "2021-06-01")),
            Err((400, ERROR_CSR_API_VERSION))
        );
        let mut tampered = b64.decode(&csr).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        let tampered = b64.encode(tampered);
        for bad in ["not base64!", "AAAA", &csr[..csr.len() / 2], &tampered] {
            assert_eq!(
                code(issuer.issue(bad, "dev1", CSR_API_VERSION)),
                Err((400, ERROR_BAD_CSR)),
                "{bad}"
            );
        }
        let other_key = KeyPair::generate().unwrap().serialize_pem();
        let e = Issuer::new(&Pki {
            intermediate_key_pem: Some(other_key),
            ..pki.clone()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("not the key"), "{e}");
        let no_key = Issuer::new(&Pki {
            intermediate_key_pem: None,
            ..pki
        })
        .unwrap();
        assert_eq!(
            code(no_key.issue(&csr, "dev1", CSR_API_VERSION)),
            Err((500, ERROR_INTERNAL))
        );
    }
}
