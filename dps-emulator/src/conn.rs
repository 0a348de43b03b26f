//! One device connection: the MQTT 3.1.1 session over any byte stream (TLS or WebSocket).
//!
//! The loop is sequential: read a packet, answer it, read the next (answers held by the
//! scenario's `latency_ms` wait in a queue meanwhile). Every way a connection ends
//! is one log line saying why; nothing a client sends can make the task panic.

use crate::dps::{self, Request};
use crate::registry::{Context, Reply};
use crate::scenario::{Scenario, Stage};
use crate::timeline::{ConnRecord, Detail};
use crate::{sas, tls, Shared, MAX_PACKET};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use rustls::pki_types::CertificateDer;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// What the accept loop knows about a connection.
pub(crate) struct ConnInfo {
    pub(crate) id: u64,
    pub(crate) transport: &'static str,
    pub(crate) accepted: Instant,
    /// The certificate chain the client sent in the TLS handshake, leaf first.
    pub(crate) client_chain: Option<Vec<CertificateDer<'static>>>,
}

enum Incoming {
    Packet(Packet, usize),
    /// A CONNECT for another protocol name or level.
    WrongProtocol(String),
}

struct Conn<S> {
    io: S,
    buf: BytesMut,
    shared: Arc<Shared>,
    info: ConnInfo,
    rec: ConnRecord,
    regid: String,
    /// The api-version of the CONNECT user name.
    api_version: String,
    scenario: Scenario,
    keep_alive: Option<Duration>,
    connect_seen: bool,
    last_rx: Instant,
    next_pkid: u16,
    inflight: HashSet<u16>,
    /// Packets the scenario's `latency_ms` holds back, in send order.
    pending: VecDeque<Delayed>,
}

/// An encoded packet waiting for its due time.
struct Delayed {
    due: Instant,
    bytes: BytesMut,
    name: &'static str,
    topic: Option<String>,
}

/// Runs the session until it ends, then logs why and closes the stream.
pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    shared: Arc<Shared>,
    info: ConnInfo,
    rec: ConnRecord,
) {
    let last_rx = info.accepted;
    let mut c = Conn {
        io,
        buf: BytesMut::with_capacity(4096),
        shared,
        info,
        rec,
        regid: String::new(),
        api_version: String::new(),
        scenario: Scenario::default(),
        keep_alive: None,
        connect_seen: false,
        last_rx,
        next_pkid: 0,
        inflight: HashSet::new(),
        pending: VecDeque::new(),
    };
    let why = match c.session().await {
        Ok(why) => why,
        Err(why) => why,
    };
    // what latency_ms still holds goes out, as it would on a slow link before the close
    let _ = c.flush(true).await;
    c.log(format!("closed: {why}"));
    let _ = tokio::time::timeout(Duration::from_secs(1), c.io.shutdown()).await;
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

fn return_code(code: u8) -> ConnectReturnCode {
    match code {
        0 => ConnectReturnCode::Success,
        1 => ConnectReturnCode::RefusedProtocolVersion,
        2 => ConnectReturnCode::BadClientId,
        3 => ConnectReturnCode::ServiceUnavailable,
        4 => ConnectReturnCode::BadUserNamePassword,
        _ => ConnectReturnCode::NotAuthorized,
    }
}

/// Protocol name and level of a complete CONNECT packet in `frame` (fixed header included).
fn connect_protocol(frame: &[u8]) -> Option<(String, u8)> {
    // the remaining-length varint ends at the first byte without the continuation bit
    let len_bytes = frame.get(1..5)?.iter().position(|b| b & 0x80 == 0)? + 1;
    let vh = frame.get(1 + len_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*vh.first()?, *vh.get(1)?]));
    let name = vh.get(2..2 + name_len)?;
    let level = *vh.get(2 + name_len)?;
    Some((String::from_utf8_lossy(name).into_owned(), level))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn log(&self, text: String) {
        let who = if self.regid.is_empty() {
            String::new()
        } else {
            format!(" {}", self.regid)
        };
        self.shared.log.line(format!(
            "conn {} {}{}: {text}",
            self.info.id, self.info.transport, who
        ));
    }

    /// Reads one complete packet. `deadline` bounds the wait (with what to say when it
    /// passes); a packet that has started must also complete within the connect timeout.
    async fn read_packet(
        &mut self,
        deadline: Option<(Instant, String)>,
    ) -> Result<Option<Incoming>, String> {
        let mut partial_deadline: Option<Instant> = None;
        loop {
            if !self.buf.is_empty() {
                // Refuse at the first byte a client that does not start with CONNECT (an HTTP
                // request, say) instead of waiting for a "packet" that never completes.
                if !self.connect_seen && self.buf[0] >> 4 != 1 {
                    return Err(format!(
                        "first packet is not CONNECT (first byte 0x{:02x})",
                        self.buf[0]
                    ));
                }
                match mqttbytes::check(self.buf.iter(), MAX_PACKET) {
                    Ok(fh) => {
                        let len = fh.frame_length();
                        if len > MAX_PACKET {
                            return Err(format!(
                                "packet of {len} bytes exceeds the {MAX_PACKET}-byte limit"
                            ));
                        }
                        if self.buf[0] >> 4 == 1 {
                            match connect_protocol(&self.buf[..len]) {
                                Some((name, 4)) if name == "MQTT" => {}
                                Some((name, level)) => {
                                    return Ok(Some(Incoming::WrongProtocol(format!(
                                        "protocol {name:?} level {level}; only MQTT 3.1.1 (\"MQTT\" level 4) is served"
                                    ))))
                                }
                                None => return Err("malformed CONNECT packet".into()),
                            }
                        }
                        let kind = self.buf[0] >> 4;
                        let p = Packet::read(&mut self.buf, MAX_PACKET).map_err(|e| {
                            format!("malformed packet (type {kind}, {len} bytes): {e}")
                        })?;
                        return Ok(Some(Incoming::Packet(p, len)));
                    }
                    Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => {
                        return Err(format!(
                            "packet with remaining length {n} exceeds the {MAX_PACKET}-byte limit"
                        ))
                    }
                    Err(e) => return Err(format!("malformed packet: {e}")),
                }
                partial_deadline.get_or_insert(Instant::now() + self.shared.cfg.connect_timeout);
            }
            let (limit, why) = match (&deadline, partial_deadline) {
                (Some((d, why)), Some(p)) if *d <= p => (Some(*d), why.clone()),
                (_, Some(p)) => (
                    Some(p),
                    format!(
                        "client stalled in the middle of a packet for {:?}",
                        self.shared.cfg.connect_timeout
                    ),
                ),
                (Some((d, why)), None) => (Some(*d), why.clone()),
                (None, None) => (None, String::new()),
            };
            // packets held by latency_ms that are due go out first; the read gives way to the next
            self.flush(false).await?;
            let next_due = self.pending.front().map(|p| p.due);
            self.buf.reserve(8192);
            let read = async {
                let read = self.io.read_buf(&mut self.buf);
                match limit {
                    Some(l) => tokio::time::timeout_at(l, read).await.map_err(|_| why)?,
                    None => read.await,
                }
                .map_err(|e| format!("read failed: {e}"))
            };
            let n = match next_due {
                None => Some(read.await?),
                Some(due) => tokio::select! {
                    n = read => Some(n?),
                    () = tokio::time::sleep_until(due) => None,
                },
            };
            let Some(n) = n else { continue };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err("client closed the connection in the middle of a packet".into())
                };
            }
        }
    }

    /// Sends `p`. The scenario's `delay_ms` holds the connection: it sleeps, then sends, and
    /// reads nothing meanwhile. Its `latency_ms` holds only the packet: it waits in a queue
    /// while the connection keeps reading and answering, like a packet on a slow link, so a
    /// client that pipelines its requests is not made to look as if it had waited.
    async fn send(&mut self, p: Packet) -> Result<(), String> {
        if self.scenario.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.scenario.delay_ms)).await;
        }
        let mut out = BytesMut::new();
        p.write(&mut out, MAX_PACKET)
            .map_err(|e| format!("cannot encode {}: {e}", packet_name(&p)))?;
        let topic = match &p {
            Packet::Publish(p) => Some(p.topic.clone()),
            _ => None,
        };
        self.pending.push_back(Delayed {
            due: Instant::now() + Duration::from_millis(self.scenario.latency_ms),
            bytes: out,
            name: packet_name(&p),
            topic,
        });
        if self.scenario.latency_ms == 0 {
            self.flush(false).await?;
        }
        Ok(())
    }

    /// Writes the queued packets that are due; with `all`, waits for and writes every one.
    async fn flush(&mut self, all: bool) -> Result<(), String> {
        while let Some(first) = self.pending.front() {
            if first.due > Instant::now() {
                if !all {
                    return Ok(());
                }
                tokio::time::sleep_until(first.due).await;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.rec
                .push("out", p.name, p.topic.as_deref(), p.bytes.len());
            let write = async {
                self.io.write_all(&p.bytes).await?;
                self.io.flush().await
            };
            tokio::time::timeout(self.shared.cfg.connect_timeout, write)
                .await
                .map_err(|_| "client does not read (write timed out)".to_string())?
                .map_err(|e| format!("write failed: {e}"))?;
        }
        Ok(())
    }

    /// The whole session; the string says why it ended.
    async fn session(&mut self) -> Result<String, String> {
        let connect_deadline = self.info.accepted + self.shared.cfg.connect_timeout;
        let first = self
            .read_packet(Some((
                connect_deadline,
                format!("no CONNECT within {:?}", self.shared.cfg.connect_timeout),
            )))
            .await?;
        let (connect, len) = match first {
            None => return Err("client closed the connection before CONNECT".into()),
            Some(Incoming::WrongProtocol(why)) => {
                self.rec.push("in", "CONNECT", None, 0);
                self.send(Packet::ConnAck(ConnAck::new(
                    ConnectReturnCode::RefusedProtocolVersion,
                    false,
                )))
                .await?;
                return Err(format!("CONNACK 1: {why}"));
            }
            Some(Incoming::Packet(Packet::Connect(c), len)) => {
                self.connect_seen = true;
                (c, len)
            }
            Some(Incoming::Packet(other, _)) => {
                return Err(format!(
                    "first packet is {}, not CONNECT",
                    packet_name(&other)
                ))
            }
        };
        self.last_rx = Instant::now();
        self.on_connect(connect, len).await?;

        loop {
            let deadline = self.keep_alive.map(|ka| {
                (
                    self.last_rx + ka.mul_f64(1.5),
                    format!("client silent for 1.5 x its keep-alive of {ka:?}"),
                )
            });
            let Some(incoming) = self.read_packet(deadline).await? else {
                return Err("client closed the connection".into());
            };
            let Incoming::Packet(p, len) = incoming else {
                return Err("a second CONNECT".into());
            };
            self.last_rx = Instant::now();
            let (topic, detail) = match &p {
                Packet::Publish(p) => {
                    let request = dps::parse_request_topic(&p.topic).is_ok();
                    let detail = Detail {
                        csr: request.then(|| dps::body_has_csr(&p.payload)),
                        ..Detail::default()
                    };
                    (Some(p.topic.clone()), detail)
                }
                _ => (None, Detail::default()),
            };
            self.rec
                .push_detail("in", packet_name(&p), topic.as_deref(), len, detail);
            match p {
                Packet::Subscribe(s) => self.on_subscribe(s).await?,
                Packet::Publish(p) => self.on_publish(p).await?,
                Packet::PubAck(a) => {
                    if !self.inflight.remove(&a.pkid) {
                        self.log(format!("PUBACK for unknown packet id {}", a.pkid));
                    }
                }
                Packet::PingReq => self.send(Packet::PingResp).await?,
                Packet::Disconnect => return Ok("client sent DISCONNECT".into()),
                Packet::Unsubscribe(u) => {
                    self.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await?
                }
                other => return Err(format!("unexpected {} from a client", packet_name(&other))),
            }
        }
    }

    async fn refuse(&mut self, code: u8, why: String) -> Result<(), String> {
        self.send(Packet::ConnAck(ConnAck::new(return_code(code), false)))
            .await?;
        Err(format!("CONNACK {code}: {why}"))
    }

    async fn on_connect(
        &mut self,
        c: rumqttc::mqttbytes::v4::Connect,
        len: usize,
    ) -> Result<(), String> {
        let (username, password) = match &c.login {
            Some(l) => (l.username.clone(), l.password.clone()),
            None => (String::new(), String::new()),
        };
        let user = dps::parse_username(&username);
        if let Ok(u) = &user {
            self.regid = u.regid.clone();
            self.api_version = u.api_version.clone();
            self.rec.set_regid(&u.regid);
        }
        let detail = Detail {
            api_version: user.as_ref().ok().map(|u| u.api_version.clone()),
            ..Detail::default()
        };
        self.rec.push_detail("in", "CONNECT", None, len, detail);
        let u = match user {
            Ok(u) => u,
            Err(why) => return self.refuse(5, why).await,
        };
        if c.client_id != u.regid {
            return self
                .refuse(
                    5,
                    format!(
                        "client id {:?} differs from the registration id {:?} in the username",
                        c.client_id, u.regid
                    ),
                )
                .await;
        }
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        if !u.scope.eq_ignore_ascii_case(&cfg.id_scope) {
            let why = format!(
                "ID scope {:?}, this emulator serves {:?}",
                u.scope, cfg.id_scope
            );
            return self.refuse(5, why).await;
        }
        self.scenario = cfg.scenario_for(&u.regid).clone();
        let method = match self.authenticate(&u.regid, &password) {
            Ok(m) => m,
            Err(why) => return self.refuse(5, why).await,
        };
        let n = self.shared.registry.connected(&u.regid);
        if self
            .shared
            .registry
            .should_drop(&u.regid, &self.scenario, Stage::Connect)
        {
            return Err("scenario drop_after connect: dropped without CONNACK".into());
        }
        if let Some(code) = self.scenario.connack_refuse {
            match self.scenario.connack_times {
                Some(times) if n > u64::from(times) => {}
                _ => return self.refuse(code, "scenario connack_refuse".into()).await,
            }
        }
        self.keep_alive = (c.keep_alive > 0).then(|| Duration::from_secs(u64::from(c.keep_alive)));
        self.send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await?;
        self.log(format!(
            "connected ({method}, api-version {}, keep-alive {}s, connection #{n} of this id)",
            u.api_version, c.keep_alive
        ));
        Ok(())
    }

    /// X.509 when the client sent a certificate, SAS otherwise. Returns the method's name.
    fn authenticate(&self, regid: &str, password: &str) -> Result<&'static str, String> {
        let cfg = &self.shared.cfg;
        if let Some(chain) = &self.info.client_chain {
            if !cfg.x509_enabled {
                return Err("client certificate sent but X.509 is disabled".into());
            }
            self.shared.tls.check_client_chain(chain)?;
            let cn = chain.first().and_then(tls::common_name);
            return match cn {
                Some(cn) if cn == regid => Ok("x509"),
                Some(cn) => Err(format!(
                    "certificate CN {cn:?} differs from the registration id {regid:?}"
                )),
                None => Err("certificate has no CN".into()),
            };
        }
        if password.is_empty() {
            return Err("no credentials: neither a client certificate nor a SAS token".into());
        }
        sas::verify(
            password,
            &cfg.id_scope,
            regid,
            cfg.individual_keys.get(regid).map(String::as_str),
            &cfg.group_keys,
            sas::now_unix(),
        )
        .map(|()| "symmetric key")
        .map_err(|e| e.to_string())
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), String> {
        if self
            .shared
            .registry
            .should_drop(&self.regid, &self.scenario, Stage::Subscribe)
        {
            return Err("scenario drop_after subscribe: dropped without SUBACK".into());
        }
        let fail = self.scenario.suback_fail;
        let codes: Vec<SubscribeReasonCode> = s
            .filters
            .iter()
            .map(|f| {
                if !fail && f.path == dps::REPLY_FILTER {
                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                } else {
                    SubscribeReasonCode::Failure
                }
            })
            .collect();
        for f in &s.filters {
            if f.path != dps::REPLY_FILTER {
                self.log(format!("refused subscription to {:?}", f.path));
            }
        }
        if fail {
            self.log("scenario suback_fail: SUBACK 0x80".into());
        }
        self.send(Packet::SubAck(SubAck::new(s.pkid, codes))).await
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), String> {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck::new(p.pkid))).await?,
            QoS::ExactlyOnce => return Err("QoS 2 PUBLISH (DPS supports QoS 0 and 1)".into()),
        }
        let req = match dps::parse_request_topic(&p.topic) {
            Ok(r) => r,
            Err(why) => {
                self.log(format!("ignored PUBLISH: {why}"));
                return Ok(());
            }
        };
        let (stage, what) = match &req {
            Request::Register { .. } => (Stage::Register, "register"),
            Request::Poll { .. } => (Stage::Poll, "poll"),
        };
        if self
            .shared
            .registry
            .should_drop(&self.regid, &self.scenario, stage)
        {
            return Err(format!(
                "scenario drop_after {}: dropped without a reply",
                stage.name()
            ));
        }
        if self.scenario.never_reply {
            self.log(format!(
                "{what} $rid={}: not answered (scenario never_reply)",
                req.rid()
            ));
            return Ok(());
        }
        let Reply {
            status,
            retry_after,
            body,
            note,
        } = self.shared.registry.answer(
            &self.regid,
            &req,
            &p.payload,
            &self.scenario,
            &Context {
                api_version: &self.api_version,
                issuer: &self.shared.issuer,
            },
        );
        let topic = dps::reply_topic(
            status,
            req.rid(),
            retry_after,
            self.scenario.reordered_query,
        );
        self.log(format!("{what} $rid={} -> {status} ({note})", req.rid()));
        self.next_pkid = if self.next_pkid == u16::MAX {
            1
        } else {
            self.next_pkid + 1
        };
        let mut reply = Publish::new(topic, QoS::AtLeastOnce, body.into_bytes());
        reply.pkid = self.next_pkid;
        self.inflight.insert(reply.pkid);
        self.send(Packet::Publish(reply)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_of_connect_frames() {
        // 3.1.1
        let f = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 0];
        assert_eq!(connect_protocol(&f), Some(("MQTT".into(), 4)));
        // 3.1
        let f = [
            0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 0, 0, 0,
        ];
        assert_eq!(connect_protocol(&f), Some(("MQIsdp".into(), 3)));
        assert_eq!(connect_protocol(&[0x10, 1, 0]), None);
        assert_eq!(connect_protocol(&[0x10]), None);
    }
}
