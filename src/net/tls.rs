//! rustls client configurations from PEM text: the trusted CA (or the platform trust store,
//! read lazily once per process), the device's certificate chain and key. TLS 1.3 preferred,
//! TLS 1.2 the floor.

use std::path::PathBuf;
use std::sync::Arc;

use once_cell::sync::{Lazy, OnceCell};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

use super::resumption::OneServer;

use crate::error::Error;

/// The device's certificate chain and private key, parsed and checked to match.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The crypto provider: rustls' *ring* provider, with the suites a DPS connection uses. Azure DPS
/// offers AES-GCM in TLS 1.3 and ECDHE-RSA / ECDHE-ECDSA AES-GCM in TLS 1.2, so the
/// ChaCha20-Poly1305 suites are left out: −56 KB of ring assembly and rustls code in the
/// stripped .so (benches/size-experiments.md). AES-GCM works on every CPU (ring has
/// constant-time code for those without AES instructions, slower than ChaCha20 there). The key
/// exchange groups and signature algorithms are rustls' defaults. The provider is built here
/// rather than from `default_provider()`, whose suite list would keep the ChaCha20 code linked.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: Lazy<Arc<CryptoProvider>> = Lazy::new(|| {
        use rustls::crypto::ring::{cipher_suite as cs, kx_group};
        Arc::new(CryptoProvider {
            cipher_suites: vec![
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS13_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ],
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
            signature_verification_algorithms: SIGNATURE_ALGORITHMS,
            secure_random: &Ring,
            key_provider: &Ring,
        })
    });
    PROVIDER.clone()
}

/// Randomness and key loading as rustls' *ring* provider does them.
#[derive(Debug)]
struct Ring;

impl rustls::crypto::SecureRandom for Ring {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

impl rustls::crypto::KeyProvider for Ring {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        rustls::crypto::ring::sign::any_supported_type(&zeroize::Zeroizing::new(key_der))
    }
}

/// The signature algorithms rustls' *ring* provider verifies (rustls 0.23's table, which it
/// does not export on its own).
static SIGNATURE_ALGORITHMS: rustls::crypto::WebPkiSupportedAlgorithms = {
    use rustls::SignatureScheme as S;
    use webpki::ring as alg;
    rustls::crypto::WebPkiSupportedAlgorithms {
        all: &[
            alg::ECDSA_P256_SHA256,
            alg::ECDSA_P256_SHA384,
            alg::ECDSA_P384_SHA256,
            alg::ECDSA_P384_SHA384,
            alg::ED25519,
            alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            alg::RSA_PKCS1_2048_8192_SHA256,
            alg::RSA_PKCS1_2048_8192_SHA384,
            alg::RSA_PKCS1_2048_8192_SHA512,
            alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        mapping: &[
            // for TLS 1.2 the curve is not fixed by the scheme; for TLS 1.3 it is
            (
                S::ECDSA_NISTP384_SHA384,
                &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
            ),
            (
                S::ECDSA_NISTP256_SHA256,
                &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
            ),
            (S::ED25519, &[alg::ED25519]),
            (
                S::RSA_PSS_SHA512,
                &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
            ),
            (
                S::RSA_PSS_SHA384,
                &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
            ),
            (
                S::RSA_PSS_SHA256,
                &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
            ),
            (S::RSA_PKCS1_SHA512, &[alg::RSA_PKCS1_2048_8192_SHA512]),
            (S::RSA_PKCS1_SHA384, &[alg::RSA_PKCS1_2048_8192_SHA384]),
            (S::RSA_PKCS1_SHA256, &[alg::RSA_PKCS1_2048_8192_SHA256]),
        ],
    }
};

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            why: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what,
            why: "no \"-----BEGIN CERTIFICATE-----\" block found".into(),
        });
    }
    Ok(certs)
}

/// One or more trusted CA certificates in PEM.
pub fn trusted_roots(pem: &str) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, "trusted certificate")? {
        roots.add(cert).map_err(|e| Error::Pem {
            what: "trusted certificate",
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The device certificate (leaf first, then intermediates) and its private key in PEM.
pub fn identity(certificate_pem: &str, key_pem: &str) -> Result<Identity, Error> {
    let chain = certificates(certificate_pem, "client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| Error::Pem {
        what: "private key",
        why: format!("no usable PKCS#8, PKCS#1 or SEC1 key in the PEM text ({e})"),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Error::Pem {
            what: "private key",
            why: format!("unsupported or corrupt key: {e}"),
        })?;
    CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|e| Error::Pem {
            what: "private key",
            why: format!("it does not belong to the client certificate ({e})"),
        })?;
    Ok(Identity { chain, key })
}

/// Where the platform trust store is: `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set (as
/// rustls-native-certs reads them), else the usual places of the system's store.
#[derive(Debug)]
struct TrustPaths {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl TrustPaths {
    fn from_env() -> TrustPaths {
        let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|dirs| {
                std::env::split_paths(&dirs)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if file.is_some() || !dirs.is_empty() {
            return TrustPaths { file, dirs };
        }
        let probed = openssl_probe::probe();
        TrustPaths {
            file: probed.cert_file,
            dirs: probed.cert_dir,
        }
    }
}

static TRUST_PATHS: OnceCell<TrustPaths> = OnceCell::new();

/// Reads the environment variables that say where the platform trust store is, once per
/// process, on the calling thread: call it on the application's thread before the store is
/// read on ours, so that no `getenv` of ours races a `setenv` of the application's.
pub fn note_trust_paths() {
    if !native_roots_loaded() {
        TRUST_PATHS.get_or_init(TrustPaths::from_env);
    }
}

static NATIVE_ROOTS: Lazy<Result<Arc<RootCertStore>, String>> =
    Lazy::new(|| load_roots(TRUST_PATHS.get_or_init(TrustPaths::from_env)));

fn load_roots(paths: &TrustPaths) -> Result<Arc<RootCertStore>, String> {
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let file = std::iter::once((paths.file.as_deref(), None));
    let dirs = paths.dirs.iter().map(|dir| (None, Some(dir.as_path())));
    for (file, dir) in file.chain(dirs) {
        let loaded = rustls_native_certs::load_certs_from_paths(file, dir);
        found.extend(loaded.certs);
        errors.extend(loaded.errors);
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found);
    match added {
        0 => Err(match errors.first() {
            Some(e) => e.to_string(),
            None => format!("no CA certificates found (looked in {paths:?})"),
        }),
        _ => Ok(Arc::new(roots)),
    }
}

/// Whether the platform trust store has been read already (building a configuration with it
/// is then cheap).
pub fn native_roots_loaded() -> bool {
    Lazy::get(&NATIVE_ROOTS).is_some()
}

/// The platform trust store, read on first use only.
fn native_roots() -> Result<Arc<RootCertStore>, Error> {
    NATIVE_ROOTS.clone().map_err(Error::TrustStore)
}

/// The lowest TLS version a handle accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// A client configuration; the platform trust store is read only when no CA was given.
pub fn client_config(
    trusted: Option<&Arc<RootCertStore>>,
    identity: Option<&Identity>,
    min: MinVersion,
) -> Result<Arc<ClientConfig>, Error> {
    let roots = match trusted {
        Some(roots) => roots.clone(),
        None => native_roots()?,
    };
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| Error::Internal(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| Error::Pem {
                what: "client certificate",
                why: e.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::store(Arc::new(OneServer::default()));
    Ok(Arc::new(config))
}

/// Words a device engineer can act on, from a rustls failure.
pub fn explain(error: &rustls::Error, host: &str) -> (String, bool) {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let why = match error {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the server certificate is not trusted (unknown issuer: give its CA with the TrustedCerts option)".into()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("host name mismatch: the server certificate is not valid for {host:?}")
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "the server certificate has expired".into(),
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server certificate is not valid yet (check the device clock)".into()
        }
        E::InvalidCertificate(C::BadSignature) => {
            "the server certificate is not trusted (its signature does not verify with the trusted CA of the same name: is TrustedCerts the right CA?)".into()
        }
        E::InvalidCertificate(C::Revoked) => "the server certificate is revoked".into(),
        E::InvalidCertificate(other) => format!("the server certificate is invalid ({other:?})"),
        E::AlertReceived(A::ProtocolVersion) => {
            "the server does not speak TLS 1.2 or newer (it sent a protocol_version alert)".into()
        }
        E::PeerIncompatible(why) => {
            format!("the server offers no TLS version or cipher suite we accept; TLS 1.2 is the floor ({why:?})")
        }
        E::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate and none was sent (alert CertificateRequired: an X.509 device needs x509_cert)".into()
        }
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked),
        ) => format!("the server rejected the client certificate (alert {a:?})"),
        E::AlertReceived(A::HandshakeFailure) => {
            "the server aborted the handshake (handshake_failure: no common TLS version or cipher suite, or it needs a client certificate)".into()
        }
        other => other.to_string(),
    };
    (why, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_rustls_ring_provider_without_the_chacha20_suites() {
        let ring = rustls::crypto::ring::default_provider();
        let ours = provider();
        let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
        let want: Vec<String> = ring
            .cipher_suites
            .iter()
            .map(name)
            .filter(|n| !n.contains("CHACHA20"))
            .collect();
        assert_eq!(
            ours.cipher_suites.iter().map(name).collect::<Vec<_>>(),
            want
        );
        assert_eq!(want.len(), 6, "{want:?}");
        let group = |g: &&dyn rustls::crypto::SupportedKxGroup| g.name();
        assert_eq!(
            ours.kx_groups.iter().map(group).collect::<Vec<_>>(),
            ring.kx_groups.iter().map(group).collect::<Vec<_>>()
        );
        // the signature table copied from rustls: the same algorithms, schemes and order
        type Alg = &'static dyn rustls::pki_types::SignatureVerificationAlgorithm;
        let ids = |algs: &[Alg]| {
            algs.iter()
                .map(|a| (a.public_key_alg_id(), a.signature_alg_id()))
                .collect::<Vec<_>>()
        };
        let (a, b) = (
            ours.signature_verification_algorithms,
            ring.signature_verification_algorithms,
        );
        assert_eq!(ids(a.all), ids(b.all));
        assert_eq!(a.mapping.len(), b.mapping.len());
        for (x, y) in a.mapping.iter().zip(b.mapping) {
            assert_eq!(x.0, y.0);
            assert_eq!(ids(x.1), ids(y.1), "{:?}", x.0);
        }
    }

    #[test]
    fn a_same_name_ca_that_did_not_sign_is_explained() {
        let (why, transient) = explain(
            &rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
            "localhost",
        );
        assert!(
            why.contains("not trusted") && why.contains("TrustedCerts"),
            "{why}"
        );
        assert!(!transient);
    }

    #[test]
    fn the_trust_store_is_read_from_the_paths_given() {
        let dir = std::env::temp_dir().join(format!("pmt-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = |name: &str| {
            let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        let file = dir.join("bundle.pem");
        std::fs::write(&file, ca("one") + &ca("two")).unwrap();
        let more = dir.join("more");
        std::fs::create_dir_all(&more).unwrap();
        std::fs::write(more.join("three.pem"), ca("three")).unwrap();
        let roots = load_roots(&TrustPaths {
            file: Some(file),
            dirs: vec![more],
        })
        .unwrap();
        assert_eq!(roots.len(), 3);
        let none = load_roots(&TrustPaths {
            file: None,
            dirs: vec![dir.join("missing")],
        })
        .unwrap_err();
        assert!(none.contains("missing"), "{none}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_text_without_certificates() {
        let e = trusted_roots("hello").unwrap_err();
        assert!(
            e.to_string()
                .contains("no \"-----BEGIN CERTIFICATE-----\" block"),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_key_that_is_not_a_key() {
        let e = identity("junk", "junk").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Pem {
                    what: "client certificate",
                    ..
                }
            ),
            "{e}"
        );
    }
}
