//! A small MQTT test client: rumqttc's v4 codec over tokio-rustls, optionally through a
//! WebSocket, with helpers that speak DPS.
#![allow(dead_code)]

use bytes::BytesMut;
use dps_emulator::pki::DeviceCert;
use dps_emulator::{sas, tls::certs_from_pem, ws, Config, Emulator, Pki, MAX_PACKET};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, QoS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const SCOPE: &str = "0ne00000000";
pub const API: &str = "2021-06-01";
pub const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5";
pub const GROUP_KEY: &str = "Z3JvdXAta2V5LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk=";
pub const WAIT: Duration = Duration::from_secs(5);

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An emulator with a PKI for `devices`, the individual key KEY for "sym1", the group key
/// GROUP_KEY, and ephemeral ports; `f` adjusts the config.
pub fn emulator(devices: &[&str], f: impl FnOnce(Config) -> Config) -> (Emulator, Pki) {
    let pki = Pki::generate(devices);
    let cfg = Config::ephemeral()
        .with_pki(pki.clone())
        .with_symmetric_key("sym1", KEY)
        .with_group_key(GROUP_KEY);
    let mut cfg = f(cfg);
    cfg.log_to_stderr = std::env::var_os("EMU_LOG").is_some();
    (Emulator::start(cfg).expect("emulator starts"), pki)
}

#[derive(Debug, PartialEq)]
pub enum RecvError {
    Closed,
    Timeout,
    Malformed(String),
}

pub struct Client {
    io: Box<dyn Io>,
    buf: BytesMut,
    next_pkid: u16,
}

pub enum Transport {
    Tls,
    Wss,
}

pub async fn tls_stream(
    addr: SocketAddr,
    root_ca_pem: &str,
    device: Option<&DeviceCert>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(root_ca_pem)? {
        roots.add(c).map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
    let config = match device {
        None => builder.with_no_client_auth(),
        Some(d) => builder
            .with_client_auth_cert(
                certs_from_pem(&d.cert_chain_pem)?,
                PrivateKeyDer::from_pem_slice(d.key_pem.as_bytes())
                    .map_err(std::io::Error::other)?,
            )
            .map_err(std::io::Error::other)?,
    };
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

impl Client {
    pub async fn open(
        t: Transport,
        emu: &Emulator,
        pki: &Pki,
        device: Option<&DeviceCert>,
    ) -> std::io::Result<Client> {
        match t {
            Transport::Tls => Self::tls(emu.mqtt_addr(), &pki.root_ca_pem, device).await,
            Transport::Wss => Self::wss(emu.ws_addr(), &pki.root_ca_pem, device, "mqtt").await,
        }
    }

    pub async fn tls(
        addr: SocketAddr,
        root_ca_pem: &str,
        device: Option<&DeviceCert>,
    ) -> std::io::Result<Client> {
        let s = tls_stream(addr, root_ca_pem, device).await?;
        Ok(Client::over(Box::new(s)))
    }

    pub async fn wss(
        addr: SocketAddr,
        root_ca_pem: &str,
        device: Option<&DeviceCert>,
        subprotocol: &str,
    ) -> std::io::Result<Client> {
        let s = tls_stream(addr, root_ca_pem, device).await?;
        let ws = ws::connect(s, &format!("localhost:{}", addr.port()), subprotocol)
            .await
            .map_err(std::io::Error::other)?;
        Ok(Client::over(Box::new(ws)))
    }

    pub fn over(io: Box<dyn Io>) -> Client {
        Client {
            io,
            buf: BytesMut::new(),
            next_pkid: 0,
        }
    }

    pub fn encode(p: &Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        b.to_vec()
    }

    /// Closes our side (TLS close_notify / WebSocket close).
    pub async fn io_shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Writes `bytes` in one write (one TLS record / one WebSocket message).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    pub async fn send(&mut self, p: Packet) -> std::io::Result<()> {
        self.send_raw(&Self::encode(&p)).await
    }

    pub async fn recv(&mut self, within: Duration) -> Result<Packet, RecvError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET * 2) {
                Ok(p) => return Ok(p),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(RecvError::Malformed(e.to_string())),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(RecvError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Waits until the server closes the connection (ignoring packets), up to `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Err(RecvError::Closed) | Err(RecvError::Malformed(_)) => return true,
                Err(RecvError::Timeout) => return false,
                Ok(_) => {}
            }
        }
    }

    pub fn connect_packet(regid: &str, password: Option<&str>) -> Connect {
        Self::connect_packet_api(regid, password, API)
    }

    /// A CONNECT whose user name names this api-version.
    pub fn connect_packet_api(regid: &str, password: Option<&str>, api_version: &str) -> Connect {
        let mut c = Connect::new(regid);
        c.keep_alive = 0;
        c.set_login(
            username_api(SCOPE, regid, api_version),
            password.unwrap_or(""),
        );
        c
    }

    /// Sends CONNECT and returns the CONNACK code (Err if the connection closed first).
    pub async fn connect_with(&mut self, c: Connect) -> Result<ConnectReturnCode, RecvError> {
        self.send(Packet::Connect(c))
            .await
            .map_err(|_| RecvError::Closed)?;
        match self.recv(WAIT).await? {
            Packet::ConnAck(ConnAck { code, .. }) => Ok(code),
            other => Err(RecvError::Malformed(format!(
                "expected CONNACK, got {other:?}"
            ))),
        }
    }

    pub async fn connect(
        &mut self,
        regid: &str,
        password: Option<&str>,
    ) -> Result<ConnectReturnCode, RecvError> {
        self.connect_with(Self::connect_packet(regid, password))
            .await
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid % 65535 + 1;
        self.next_pkid
    }

    pub async fn subscribe(&mut self) -> Result<Vec<SubscribeReasonCode>, RecvError> {
        let pkid = self.pkid();
        let mut s = Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
        s.pkid = pkid;
        self.send(Packet::Subscribe(s))
            .await
            .map_err(|_| RecvError::Closed)?;
        match self.recv(WAIT).await? {
            Packet::SubAck(a) if a.pkid == pkid => Ok(a.return_codes),
            other => Err(RecvError::Malformed(format!(
                "expected SUBACK, got {other:?}"
            ))),
        }
    }

    pub async fn publish(&mut self, topic: &str, body: &[u8], qos: QoS) -> std::io::Result<u16> {
        let mut p = Publish::new(topic, qos, body.to_vec());
        if qos != QoS::AtMostOnce {
            p.pkid = self.pkid();
        }
        let pkid = p.pkid;
        self.send(Packet::Publish(p)).await?;
        Ok(pkid)
    }

    pub async fn register(&mut self, rid: &str, regid: &str) -> std::io::Result<()> {
        let body = format!(r#"{{"registrationId":"{regid}"}}"#);
        self.publish(
            &format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
            body.as_bytes(),
            QoS::AtMostOnce,
        )
        .await
        .map(|_| ())
    }

    pub async fn poll(&mut self, rid: &str, op: &str) -> std::io::Result<()> {
        self.publish(
            &format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"
            ),
            b"",
            QoS::AtMostOnce,
        )
        .await
        .map(|_| ())
    }

    /// The next reply (PUBACKed), skipping other packets.
    pub async fn reply(&mut self, within: Duration) -> Result<Reply, RecvError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Packet::Publish(p) = self.recv(left).await? {
                assert_eq!(p.qos, QoS::AtLeastOnce, "DPS replies are QoS 1");
                self.send(Packet::PubAck(PubAck::new(p.pkid)))
                    .await
                    .map_err(|_| RecvError::Closed)?;
                return Ok(Reply::parse(&p.topic, &p.payload));
            }
        }
    }

    /// CONNECT + SUBSCRIBE, asserting success.
    pub async fn start(&mut self, regid: &str, password: Option<&str>) {
        assert_eq!(
            self.connect(regid, password).await,
            Ok(ConnectReturnCode::Success)
        );
        assert_eq!(
            self.subscribe().await,
            Ok(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)])
        );
    }

    /// Register then poll until a 200 (following retry-after is not needed: the emulator does
    /// not enforce it). Returns every reply.
    pub async fn register_to_end(&mut self, regid: &str) -> Vec<Reply> {
        let body = format!(r#"{{"registrationId":"{regid}"}}"#);
        self.register_body_to_end(body.as_bytes()).await
    }

    /// Like `register_to_end`, with this register body.
    pub async fn register_body_to_end(&mut self, body: &[u8]) -> Vec<Reply> {
        let mut replies = Vec::new();
        self.publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            body,
            QoS::AtMostOnce,
        )
        .await
        .unwrap();
        let r = self.reply(WAIT).await.expect("register reply");
        assert_eq!(r.rid(), Some("1"));
        let op = r.body["operationId"].as_str().map(str::to_string);
        replies.push(r);
        let Some(op) = op else { return replies };
        for n in 2..20 {
            let rid = n.to_string();
            self.poll(&rid, &op).await.unwrap();
            let r = self.reply(WAIT).await.expect("poll reply");
            assert_eq!(r.rid(), Some(rid.as_str()));
            let done = r.status == 200 || r.status >= 400;
            replies.push(r);
            if done {
                break;
            }
        }
        replies
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub topic: String,
    pub status: u16,
    pub params: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn parse(topic: &str, payload: &[u8]) -> Reply {
        let rest = topic
            .strip_prefix("$dps/registrations/res/")
            .unwrap_or_else(|| panic!("not a reply topic: {topic}"));
        let (status, query) = rest.split_once("/?").unwrap();
        Reply {
            topic: topic.to_string(),
            status: status.parse().unwrap(),
            params: query
                .split('&')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect(),
            body: serde_json::from_slice(payload).unwrap(),
        }
    }

    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn rid(&self) -> Option<&str> {
        self.param("$rid")
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.param("retry-after").map(|v| v.parse().unwrap())
    }
}

pub fn username(scope: &str, regid: &str) -> String {
    username_api(scope, regid, API)
}

pub fn username_api(scope: &str, regid: &str, api_version: &str) -> String {
    format!("{scope}/registrations/{regid}/api-version={api_version}&ClientVersion=test%2F1.0")
}

pub fn sas_for(regid: &str, key: &str) -> String {
    sas::token(SCOPE, regid, key, sas::now_unix() + 3600)
}

/// Waits until a log line contains `needle`.
pub async fn wait_log(emu: &Emulator, needle: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if emu.log_lines().iter().any(|l| l.contains(needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
