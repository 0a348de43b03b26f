//! The emulator's TLS server configuration and the client-certificate checks.
//!
//! The handshake asks for a client certificate but does not require one (symmetric-key devices
//! send none). A device that sends one must prove it holds the key (the handshake signature
//! is checked by webpki as usual), but whether its chain leads to the emulator's root CA is
//! decided after the handshake, by the same webpki verifier: DPS refuses such a device with
//! CONNACK 5 rather than a TLS alert, and so does the emulator.

use crate::pki::Pki;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use std::io;
use std::sync::Arc;

/// TLS state shared by both listeners.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) config: Arc<ServerConfig>,
    chain_verifier: Arc<dyn ClientCertVerifier>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// Parses every certificate in a PEM text.
pub fn certs_from_pem(pem: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("reading PEM certificates", e))?;
    if certs.is_empty() {
        return Err(bad("reading PEM certificates", "no certificate found"));
    }
    Ok(certs)
}

impl Tls {
    pub(crate) fn new(pki: &Pki) -> io::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs_from_pem(&pki.root_ca_pem)? {
            roots.add(c).map_err(|e| bad("root CA", e))?;
        }
        let chain_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad("client verifier", e))?;
        let chain = certs_from_pem(&pki.server_chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
            .map_err(|e| bad("server key", e))?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", e))?
            .with_client_cert_verifier(Arc::new(DeferredChainCheck {
                inner: chain_verifier.clone(),
            }))
            .with_single_cert(chain, key)
            .map_err(|e| bad("server certificate", e))?;
        Ok(Tls {
            config: Arc::new(config),
            chain_verifier,
        })
    }

    /// Does the chain a client sent (leaf first) lead to the emulator's root CA?
    pub(crate) fn check_client_chain(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), String> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no client certificate".into());
        };
        self.chain_verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("client certificate not trusted: {e}"))
    }
}

/// The first CN of a certificate's subject.
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Accepts any client chain during the handshake (checked later, see the module docs) but
/// verifies handshake signatures for real.
#[derive(Debug)]
struct DeferredChainCheck {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChainCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
