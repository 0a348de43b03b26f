//! The certificate signing request an application gives for DPS certificate issuance: base64 DER
//! PKCS#10 (no PEM armour), as the SDK's CSR branch takes it. We check it is one and read its
//! subject CN, which DPS requires to be the registration id; the rest (key type, signature,
//! attributes) is the service's to judge.

use base64::Engine as _;
use der::asn1::{
    AnyRef, BitStringRef, Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef,
};
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};

/// The longest CSR text we take, whitespace included. Real ones are far smaller (an RSA-4096
/// request with a few SANs is about 2 KB of base64); the bound keeps the register body well
/// within the 96 KB DPS limit.
pub const MAX_CSR_LEN: usize = 32 * 1024;

/// `id-at-commonName` (RFC 4519).
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Why a CSR text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrError {
    /// Nothing but whitespace.
    Empty,
    /// Longer than [`MAX_CSR_LEN`].
    TooLong(usize),
    /// PEM armour (`-----BEGIN ...`) instead of bare base64.
    PemArmour,
    /// Not base64 (the standard alphabet, padded).
    NotBase64(String),
    /// Base64, but not a DER PKCS#10 certification request.
    NotPkcs10(String),
    /// The subject has no CN.
    NoCommonName,
    /// The subject CN is not a string type we can read as text.
    CommonNameNotText(String),
    /// The subject CN is not the registration id.
    CommonNameMismatch {
        /// The CSR's CN.
        cn: String,
        /// The registration id.
        registration_id: String,
    },
}

impl std::fmt::Display for CsrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CsrError::Empty => write!(f, "certificate signing request is empty"),
            CsrError::TooLong(n) => write!(
                f,
                "certificate signing request of {n} bytes exceeds the {MAX_CSR_LEN}-byte limit"
            ),
            CsrError::PemArmour => write!(
                f,
                "certificate signing request has PEM armour; give the base64 DER without the -----BEGIN/-----END lines"
            ),
            CsrError::NotBase64(why) => {
                write!(f, "certificate signing request is not base64: {why}")
            }
            CsrError::NotPkcs10(why) => write!(
                f,
                "certificate signing request is not a DER PKCS#10 request: {why}"
            ),
            CsrError::NoCommonName => {
                write!(f, "certificate signing request subject has no CN")
            }
            CsrError::CommonNameNotText(why) => write!(
                f,
                "certificate signing request subject CN is not readable text: {why}"
            ),
            CsrError::CommonNameMismatch {
                cn,
                registration_id,
            } => write!(
                f,
                "certificate signing request subject CN {cn:?} is not the registration id {registration_id:?}"
            ),
        }
    }
}

impl std::error::Error for CsrError {}

/// A checked CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    base64: String,
    common_name: String,
}

impl Csr {
    /// Checks `text`: base64 (ASCII whitespace anywhere is ignored, as `base64` wraps its
    /// output) of a DER PKCS#10 request whose subject has a CN.
    pub fn parse(text: &str) -> Result<Csr, CsrError> {
        if text.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLong(text.len()));
        }
        if text.contains("-----BEGIN") {
            return Err(CsrError::PemArmour);
        }
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if compact.is_empty() {
            return Err(CsrError::Empty);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|e| CsrError::NotBase64(e.to_string()))?;
        let common_name = subject_common_name(&der)?;
        Ok(Csr {
            base64: compact,
            common_name,
        })
    }

    /// The subject CN.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The request as one line of base64, whitespace removed: what goes into the register
    /// body's `"csr"`.
    pub fn base64(&self) -> &str {
        &self.base64
    }

    /// DPS issues only for a CSR whose CN is the registration id.
    pub fn check_registration_id(&self, registration_id: &str) -> Result<(), CsrError> {
        if self.common_name == registration_id {
            Ok(())
        } else {
            Err(CsrError::CommonNameMismatch {
                cn: self.common_name.clone(),
                registration_id: registration_id.to_string(),
            })
        }
    }
}

/// Walks a PKCS#10 request (RFC 2986) with the `der` crate's reader, which enforces DER
/// (definite minimal lengths, canonical tags): every field is read and its tag checked, but
/// only the subject is looked into; the key and signature stay opaque, as the service may
/// accept key types we do not know.
///
/// ```text
/// CertificationRequest ::= SEQUENCE {
///   certificationRequestInfo SEQUENCE {
///     version INTEGER (0), subject Name, subjectPKInfo SEQUENCE, attributes [0] IMPLICIT SET },
///   signatureAlgorithm SEQUENCE, signature BIT STRING }
/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }
/// ```
fn subject_common_name(der_bytes: &[u8]) -> Result<String, CsrError> {
    let cn = walk(der_bytes).map_err(|e| CsrError::NotPkcs10(e.to_string()))?;
    text_of(cn.ok_or(CsrError::NoCommonName)?)
}

/// Each level is read from its own `SliceReader` over the enclosing value (rather than the
/// reader's nested `sequence` closures), so the decoders are compiled once, for one reader type:
/// the difference is about half the code.
fn walk(der_bytes: &[u8]) -> der::Result<Option<AnyRef<'_>>> {
    let req = only(der_bytes, Tag::Sequence)?;
    let mut req = SliceReader::new(req.value())?;
    let info = expect(&mut req, Tag::Sequence)?;
    expect(&mut req, Tag::Sequence)?; // signatureAlgorithm
    BitStringRef::decode(&mut req)?; // signature
    req.finish(())?;

    let mut info = SliceReader::new(info.value())?;
    if u8::decode(&mut info)? != 0 {
        return Err(der::ErrorKind::Value { tag: Tag::Integer }.into());
    }
    let name = expect(&mut info, Tag::Sequence)?;
    expect(&mut info, Tag::Sequence)?; // subjectPKInfo
    let attributes = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    expect(&mut info, attributes)?;
    info.finish(())?;

    let mut cn = None;
    let mut rdns = SliceReader::new(name.value())?;
    while !rdns.is_finished() {
        let rdn = expect(&mut rdns, Tag::Set)?;
        let mut atvs = SliceReader::new(rdn.value())?;
        while !atvs.is_finished() {
            let atv = expect(&mut atvs, Tag::Sequence)?;
            let mut atv = SliceReader::new(atv.value())?;
            let oid = ObjectIdentifier::decode(&mut atv)?;
            let value = AnyRef::decode(&mut atv)?;
            atv.finish(())?;
            if oid == CN && cn.is_none() {
                cn = Some(value);
            }
        }
    }
    Ok(cn)
}

/// `bytes` is exactly one element with this tag.
fn only(bytes: &[u8], tag: Tag) -> der::Result<AnyRef<'_>> {
    let mut r = SliceReader::new(bytes)?;
    let any = expect(&mut r, tag)?;
    r.finish(any)
}

/// The next element, which must have this tag.
fn expect<'a>(r: &mut SliceReader<'a>, tag: Tag) -> der::Result<AnyRef<'a>> {
    let any = AnyRef::decode(r)?;
    any.tag().assert_eq(tag)?;
    Ok(any)
}

/// The text of a CN: UTF8String or PrintableString (what RFC 5280 lets new names use, and what
/// openssl and rcgen write), or IA5String. TeletexString and BMPString are refused: a
/// registration id is plain ASCII, and reading them would cost 5 KB of the library.
fn text_of(value: AnyRef<'_>) -> Result<String, CsrError> {
    let bad = |e: der::Error| CsrError::CommonNameNotText(e.to_string());
    let s = match value.tag() {
        Tag::Utf8String => value
            .decode_as::<Utf8StringRef<'_>>()
            .map_err(bad)?
            .to_string(),
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef<'_>>()
            .map_err(bad)?
            .to_string(),
        Tag::Ia5String => value
            .decode_as::<Ia5StringRef<'_>>()
            .map_err(bad)?
            .to_string(),
        other => {
            return Err(CsrError::CommonNameNotText(format!(
                "{other} is not a string type"
            )))
        }
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real request: `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -keyout /dev/null -subj /CN=dev1 -outform DER | base64 -w0`.
    const DEV1: &str = "MIHJMHECAQAwDzENMAsGA1UEAwwEZGV2MTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEGugNpF8r87bPui154dO2cQPoWIKnJCRmbmEvgm1fHm7RXNmn0ncB9SjMZjIcxgrK3L08ZKswwJAUdTw9udC6mgADAKBggqhkjOPQQDAgNIADBFAiEAv2zyvJlxoKQata+bIy5M5V+osBJ5VvyLFT0nInRRWdcCIHxZf8TYDbjgjIbNc8/jYbdZ6A8UUQpmmRwroKxIfw/q";

    fn rcgen_csr(dn: rcgen::DistinguishedName) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        let csr = p.serialize_request(&key).unwrap();
        base64::engine::general_purpose::STANDARD.encode(csr.der())
    }

    #[test]
    fn reads_the_cn_of_an_openssl_request() {
        let csr = Csr::parse(DEV1).unwrap();
        assert_eq!(csr.common_name(), "dev1");
        assert_eq!(csr.base64(), DEV1);
        assert_eq!(csr.check_registration_id("dev1"), Ok(()));
        assert_eq!(
            csr.check_registration_id("dev2"),
            Err(CsrError::CommonNameMismatch {
                cn: "dev1".into(),
                registration_id: "dev2".into()
            })
        );
    }

    #[test]
    fn whitespace_is_ignored_and_dropped() {
        let wrapped: String = DEV1
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let csr = Csr::parse(&format!("  {wrapped}\r\n")).unwrap();
        assert_eq!(csr.base64(), DEV1);
        assert_eq!(csr.common_name(), "dev1");
    }

    #[test]
    fn cn_among_other_attributes_and_string_types() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Contoso");
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::PrintableString("dev-7".try_into().unwrap()),
        );
        assert_eq!(Csr::parse(&rcgen_csr(dn)).unwrap().common_name(), "dev-7");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::Ia5String("dev-8".try_into().unwrap()),
        );
        assert_eq!(Csr::parse(&rcgen_csr(dn)).unwrap().common_name(), "dev-8");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::BmpString("dev-9".try_into().unwrap()),
        );
        let e = Csr::parse(&rcgen_csr(dn)).unwrap_err();
        assert!(matches!(e, CsrError::CommonNameNotText(_)), "{e:?}");
        assert!(e.to_string().contains("BMPString"), "{e}");
    }

    #[test]
    fn refusals_say_why() {
        let b64 = base64::engine::general_purpose::STANDARD;
        type Expect = fn(&CsrError) -> bool;
        let cases: Vec<(String, Expect)> = vec![
            ("".into(), |e| *e == CsrError::Empty),
            (" \n ".into(), |e| *e == CsrError::Empty),
            ("A".repeat(MAX_CSR_LEN + 1), |e| {
                *e == CsrError::TooLong(MAX_CSR_LEN + 1)
            }),
            (
                format!("-----BEGIN CERTIFICATE REQUEST-----\n{DEV1}\n-----END CERTIFICATE REQUEST-----"),
                |e| *e == CsrError::PemArmour,
            ),
            ("not base64!".into(), |e| matches!(e, CsrError::NotBase64(_))),
            (DEV1[..DEV1.len() - 1].into(), |e| {
                matches!(e, CsrError::NotBase64(_))
            }),
            (b64.encode(b"hello"), |e| matches!(e, CsrError::NotPkcs10(_))),
            (DEV1[..100].into(), |e| matches!(e, CsrError::NotPkcs10(_))),
            // trailing bytes after the request
            (
                b64.encode([b64.decode(DEV1).unwrap(), vec![0]].concat()),
                |e| matches!(e, CsrError::NotPkcs10(_)),
            ),
            (rcgen_csr(rcgen::DistinguishedName::new()), |e| {
                *e == CsrError::NoCommonName
            }),
        ];
        for (text, ok) in cases {
            let e = Csr::parse(&text).unwrap_err();
            assert!(ok(&e), "{text:.60}: {e:?}");
            let line = e.to_string();
            assert!(line.starts_with("certificate signing request"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn a_certificate_is_not_a_request() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["dev1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let text = base64::engine::general_purpose::STANDARD.encode(cert.der());
        assert!(matches!(Csr::parse(&text), Err(CsrError::NotPkcs10(_))));
    }
}
