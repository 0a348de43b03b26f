//! TLS session resumption for one handle. A handle keeps its client configuration for all its
//! reconnections, and they all go to one server, so this store keeps one of each thing rustls
//! remembers (the newest TLS 1.3 ticket, the TLS 1.2 session, the key-exchange group the server
//! chose) for one server name. rustls' in-memory cache keeps up to 8 tickets per name in a
//! table sized for many names: 4 to 18 KB in every handle of a fleet, against under 1 KB here.

use std::fmt;

use parking_lot::Mutex;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

#[derive(Default)]
pub struct OneServer(Mutex<Option<Remembered>>);

struct Remembered {
    server: ServerName<'static>,
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Option<Tls13ClientSessionValue>,
}

impl OneServer {
    /// Changes what is remembered for `server`, forgetting another server's.
    fn update(&self, server: ServerName<'static>, change: impl FnOnce(&mut Remembered)) {
        let mut slot = self.0.lock();
        if !matches!(slot.as_ref(), Some(r) if r.server == server) {
            *slot = Some(Remembered {
                server,
                kx_hint: None,
                tls12: None,
                tls13: None,
            });
        }
        if let Some(r) = slot.as_mut() {
            change(r);
        }
    }

    /// Reads (or takes) what is remembered for `server`.
    fn with<T>(
        &self,
        server: &ServerName<'_>,
        f: impl FnOnce(&mut Remembered) -> Option<T>,
    ) -> Option<T> {
        self.0
            .lock()
            .as_mut()
            .filter(|r| &r.server == server)
            .and_then(f)
    }
}

impl fmt::Debug for OneServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = self.0.lock();
        f.debug_struct("OneServer")
            .field("server", &slot.as_ref().map(|r| &r.server))
            .finish_non_exhaustive()
    }
}

impl ClientSessionStore for OneServer {
    fn set_kx_hint(&self, server: ServerName<'static>, group: NamedGroup) {
        self.update(server, |r| r.kx_hint = Some(group));
    }

    fn kx_hint(&self, server: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(server, |r| r.kx_hint)
    }

    fn set_tls12_session(&self, server: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.update(server, |r| r.tls12 = Some(value));
    }

    fn tls12_session(&self, server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(server, |r| r.tls12.clone())
    }

    fn remove_tls12_session(&self, server: &ServerName<'static>) {
        self.with(server, |r| r.tls12.take());
    }

    fn insert_tls13_ticket(&self, server: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.update(server, |r| r.tls13 = Some(value));
    }

    fn take_tls13_ticket(&self, server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(server, |r| r.tls13.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::Resumption;
    use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};
    use std::sync::Arc;

    struct Server {
        config: Arc<ServerConfig>,
        roots: rustls::RootCertStore,
    }

    fn server(versions: &[&'static rustls::SupportedProtocolVersion]) -> Server {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["dps.example".into(), "other.example".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Server {
            config: Arc::new(config),
            roots,
        }
    }

    fn client(
        server: &Server,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(server.roots.clone())
            .with_no_client_auth();
        config.resumption = Resumption::store(Arc::new(OneServer::default()));
        Arc::new(config)
    }

    /// One connection, in memory, until the handshake is done and the server's tickets are read.
    fn connect(client: &Arc<ClientConfig>, server: &Server, name: &'static str) -> HandshakeKind {
        let mut c =
            ClientConnection::new(client.clone(), ServerName::try_from(name).unwrap()).unwrap();
        let mut s = ServerConnection::new(server.config.clone()).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            s.read_tls(&mut &wire[..]).unwrap();
            s.process_new_packets().unwrap();
            wire.clear();
            while s.wants_write() {
                s.write_tls(&mut wire).unwrap();
            }
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets().unwrap();
        }
        assert!(!c.is_handshaking());
        c.handshake_kind().unwrap()
    }

    #[test]
    fn a_reconnection_resumes_over_tls13_and_tls12() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = server(&[version]);
            let client = client(&server, &[version]);
            assert_eq!(
                connect(&client, &server, "dps.example"),
                HandshakeKind::Full
            );
            assert_eq!(
                connect(&client, &server, "dps.example"),
                HandshakeKind::Resumed,
                "{version:?}"
            );
            assert_eq!(
                connect(&client, &server, "dps.example"),
                HandshakeKind::Resumed,
                "{version:?}"
            );
        }
    }

    #[test]
    fn another_server_name_gets_a_full_handshake_and_replaces_the_first() {
        let server = server(&[&rustls::version::TLS13]);
        let client = client(&server, &[&rustls::version::TLS13]);
        assert_eq!(
            connect(&client, &server, "dps.example"),
            HandshakeKind::Full
        );
        assert_eq!(
            connect(&client, &server, "other.example"),
            HandshakeKind::Full
        );
        assert_eq!(
            connect(&client, &server, "other.example"),
            HandshakeKind::Resumed
        );
        assert_eq!(
            connect(&client, &server, "dps.example"),
            HandshakeKind::Full
        );
    }
}
