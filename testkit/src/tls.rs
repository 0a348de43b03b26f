//! TLS for the tests' own scripted servers.

use std::sync::Arc;

use dps_emulator::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration with the emulator's server certificate (so devices that trust its
/// root connect), asking for no client certificate.
pub fn server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(pki.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the emulator's server chain");
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .expect("the emulator's server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("the server certificate");
    Arc::new(config)
}
