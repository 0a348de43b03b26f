//! TLS refusals, end to end through the C ABI, for MQTT/TLS and MQTT/WSS: a server certificate
//! from an unknown CA, a host name mismatch, an expired server certificate, a server that only
//! speaks TLS 1.0 or 1.1 (Debian's `openssl s_server`), and a server that rejects the client
//! certificate. Each is refused at once (no retry: one connection), takes the error path exactly
//! once and logs exactly one error line naming the reason.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_emulator::pki::Pki;
use dps_emulator::{Config, Emulator};
use prov_mqtt_transport::ffi::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use testkit::*;

/// Client credentials for every test (the servers here never get as far as checking them,
/// except the one that rejects them).
fn client_identity(regid: &str) -> Auth {
    let pki = Pki::generate(&[regid]);
    let d = pki.device(regid).unwrap();
    Auth::X509 {
        cert_chain_pem: d.cert_chain_pem.clone(),
        key_pem: d.key_pem.clone(),
    }
}

fn device(proto: Proto, uri: String, regid: &str, trusted_ca: &str) -> Device {
    Device::new(proto, uri, regid, client_identity(regid))
        .trusting(trusted_ca)
        .options(&[("retry_initial_ms", 50)])
}

/// The registration failed at once, through the error path once, with exactly one error line,
/// which names `reason`. Returns that line.
fn assert_refused(o: &Outcome, regid: &str, reason: &str) -> String {
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{regid}: {o:?}"
    );
    assert_eq!(o.data_callbacks, 1, "{o:?}");
    assert!(o.statuses.is_empty(), "never connected: {o:?}");
    assert!(
        o.elapsed < Duration::from_secs(5),
        "refused at once, not retried: {:?}",
        o.elapsed
    );
    let logs = logs_for(regid);
    let errors: Vec<_> = logs
        .iter()
        .filter(|l| l.contains(&format!("error [{regid}]")))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {logs:#?}");
    assert!(
        errors[0].contains("TLS handshake failed") && errors[0].contains(reason),
        "the error line names {reason:?}: {}",
        errors[0]
    );
    assert!(
        !logs.iter().any(|l| l.contains("reconnecting")),
        "a TLS refusal is not retried: {logs:#?}"
    );
    println!(
        "TLS-REFUSAL | {regid} | {:.3} s | {}",
        o.elapsed.as_secs_f64(),
        errors[0]
    );
    errors[0].clone()
}

const TIMEOUT: Duration = Duration::from_secs(30);

// ---- against the emulator ---------------------------------------------------------------

/// `same_name`: trust another emulator PKI's root, a different CA with the very same name (what
/// a device gets after the CA was re-generated); otherwise an unrelated CA.
fn unknown_ca(proto: Proto, same_name: bool) {
    let regid = match same_name {
        false => format!("tls-unknown-ca-{proto:?}"),
        true => format!("tls-same-name-ca-{proto:?}"),
    }
    .to_lowercase();
    let mut cfg = Config::ephemeral();
    cfg.log_to_stderr = false;
    let emu = Emulator::start(cfg).unwrap();
    let port = proto.port(&emu);
    let trusted = match same_name {
        true => Pki::generate(&[]).root_ca_pem,
        false => make_ca("an unrelated CA").cert.pem(),
    };
    let o = register(
        &device(proto, format!("localhost:{port}"), &regid, &trusted),
        TIMEOUT,
    );
    let line = assert_refused(&o, &regid, "the server certificate is not trusted");
    assert!(
        line.contains(match same_name {
            false => "unknown issuer",
            true => "signature does not verify",
        }),
        "{line}"
    );
    assert_eq!(emu.connections_accepted(), 1);
}

both!(unknown_ca_is_refused => |p| unknown_ca(p, false));

both!(other_ca_with_the_same_name_is_refused => |p| unknown_ca(p, true));

/// The emulator's certificate names localhost, 127.0.0.1 and ::1; serve it on 127.0.0.2.
fn host_mismatch(proto: Proto) {
    let regid = format!("tls-host-mismatch-{proto:?}").to_lowercase();
    let mut cfg = Config::ephemeral();
    cfg.log_to_stderr = false;
    cfg.bind = "127.0.0.2".parse().unwrap();
    let emu = Emulator::start(cfg).unwrap();
    let port = proto.port(&emu);
    let o = register(
        &device(
            proto,
            format!("127.0.0.2:{port}"),
            &regid,
            &emu.pki().root_ca_pem,
        ),
        TIMEOUT,
    );
    let line = assert_refused(&o, &regid, "host name mismatch");
    assert!(line.contains("127.0.0.2"), "names the host: {line}");
    assert_eq!(emu.connections_accepted(), 1);
}

both!(host_name_mismatch_is_refused => host_mismatch);

// ---- a small rustls server with certificates of our own ---------------------------------

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A server certificate for localhost / 127.0.0.1, valid between the two dates: (cert, key) PEM.
fn server_cert(ca: &Ca, from: (i32, u8, u8), to: (i32, u8, u8)) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Accepts connections on loopback, runs the TLS handshake, then reads until the peer leaves.
struct TlsServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// How each handshake ended, as the server saw it.
    handshakes: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(cert_pem: &str, key_pem: &str, client_roots: Option<&str>) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

fn tls_server(config: Arc<ServerConfig>) -> TlsServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, h, s) = (accepted.clone(), handshakes.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((tcp, _)) => {
                    a.fetch_add(1, Ordering::SeqCst);
                    let (config, h) = (config.clone(), h.clone());
                    std::thread::spawn(move || {
                        let result = handshake(config, tcp);
                        h.lock().unwrap().push(result);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    TlsServer {
        addr,
        accepted,
        handshakes,
        stop,
    }
}

fn handshake(config: Arc<ServerConfig>, mut tcp: TcpStream) -> String {
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return format!("handshake failed: {e}");
        }
    }
    // TLS 1.3: the client certificate is checked when it arrives, after the client is done.
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = [0u8; 1024];
    match tls.read(&mut buf) {
        Ok(n) => format!("handshake completed ({n} bytes read)"),
        Err(e) => format!("failed after the handshake: {e}"),
    }
}

/// Registers through `server`, trusting `ca`.
fn register_with(server: &TlsServer, proto: Proto, regid: &str, ca: &Ca) -> Outcome {
    let uri = format!("localhost:{}", server.addr.port());
    register(&device(proto, uri, regid, &ca.cert.pem()), TIMEOUT)
}

fn expired(proto: Proto) {
    let regid = format!("tls-expired-{proto:?}").to_lowercase();
    let ca = make_ca("expired-test CA");
    let (cert, key) = server_cert(&ca, (2020, 1, 1), (2021, 1, 1));
    let server = tls_server(server_config(&cert, &key, None));
    let o = register_with(&server, proto, &regid, &ca);
    assert_refused(&o, &regid, "the server certificate has expired");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

both!(expired_server_certificate_is_refused => expired);

/// The server requires a client certificate from its own CA and rejects ours in the handshake.
fn client_cert_rejected(proto: Proto) {
    let regid = format!("tls-client-rejected-{proto:?}").to_lowercase();
    let ca = make_ca("client-auth-test CA");
    let (cert, key) = server_cert(&ca, (2020, 1, 1), (2099, 1, 1));
    let other_clients = make_ca("some other device CA");
    let server = tls_server(server_config(&cert, &key, Some(&other_clients.cert.pem())));
    let o = register_with(&server, proto, &regid, &ca);
    assert_refused(&o, &regid, "the server rejected the client certificate");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.handshakes.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = server.handshakes.lock().unwrap().clone();
    assert!(
        seen.len() == 1 && seen[0].contains("UnknownIssuer"),
        "the server refused the certificate: {seen:?}"
    );
}

both!(client_certificate_rejected_is_refused => client_cert_rejected);

// ---- a server that only speaks TLS 1.0 or 1.1 (openssl s_server) ------------------------

struct OpenSsl {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for OpenSsl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `openssl s_server` limited to one old version (`-tls1` or `-tls1_1`); None when openssl is
/// not installed.
fn old_tls_server(version_flag: &str, cert: &str, key: &str) -> Option<OpenSsl> {
    if !require_tool("openssl") {
        return None;
    }
    let dir =
        std::env::temp_dir().join(format!("prov-old-tls{version_flag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .args([version_flag, "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = child.expect("openssl s_server starts");
    let server = OpenSsl { child, port, dir };
    // up to 30 s: it listens within milliseconds, but once took over 10 s on a machine running
    // two release builds besides the 16 test threads
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// Proves the server really speaks the old version: Debian's `openssl s_client` connects with it.
fn speaks(version_flag: &str, port: u16) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([version_flag, "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = match version_flag {
        "-tls1" => "Protocol  : TLSv1\n",
        _ => "Protocol  : TLSv1.1\n",
    };
    text.contains(want)
}

fn old_tls(proto: Proto, version_flag: &str) {
    let regid = format!("tls-old{version_flag}-{proto:?}").to_lowercase();
    let ca = make_ca("old-tls-test CA");
    let (cert, key) = server_cert(&ca, (2020, 1, 1), (2099, 1, 1));
    let Some(server) = old_tls_server(version_flag, &cert, &key) else {
        return;
    };
    let o = register(
        &device(
            proto,
            format!("localhost:{}", server.port),
            &regid,
            &ca.cert.pem(),
        ),
        TIMEOUT,
    );
    assert_refused(&o, &regid, "TLS 1.2");
    assert!(
        speaks(version_flag, server.port),
        "the openssl server answers {version_flag} clients"
    );
}

both!(tls_1_0_only_server_is_refused => |p| old_tls(p, "-tls1"));

both!(tls_1_1_only_server_is_refused => |p| old_tls(p, "-tls1_1"));
