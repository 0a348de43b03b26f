//! Opening a connection: the SAS token first (symmetric keys), then CONNECT and SUBSCRIBE back
//! to back, then CONNACK and SUBACK. CONNACK 3 ("server unavailable") is a fault retried within
//! the budget; the other refusals (1, 2, 4, 5) are final and reported as KEY_UNAUTHORIZED.

use std::time::Instant;

use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet, SubAck, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::ConnectReturnCode;

use super::machine::Session;
use super::types::{Auth, Callout, NetAction, Phase, ReplyStatus, Stage};
use crate::dps;
use crate::error::Error;
use crate::trace::describe;

impl Session {
    pub(super) fn begin_connect(&mut self, now: Instant) {
        match self.settings.auth {
            Auth::SymmetricKey => {
                self.phase = Phase::AwaitCredentials;
                self.callouts.push_back(Callout::Credentials(self.ticket()));
            }
            Auth::X509 => self.connect_with(now, None),
        }
    }

    pub(super) fn connect_with(&mut self, now: Instant, password: Option<crate::secret::Secret>) {
        let Some(registration_id) = self.registration_id.clone() else {
            return;
        };
        self.net.push_back(NetAction::Connect);
        self.link_up = true;
        let username = dps::username::username(
            &self.settings.scope,
            &registration_id,
            self.settings.connect_api_version(),
            dps::CLIENT_VERSION,
        );
        let mut connect = Connect::new(registration_id);
        connect.keep_alive = self.settings.keep_alive;
        connect.clean_session = true;
        connect.set_login(
            username,
            password.as_ref().map(|p| p.expose()).unwrap_or_default(),
        );
        self.send(now, Packet::Connect(connect));
        let pkid = self.next_pkid;
        self.next_pkid = if pkid >= u16::MAX - 1 { 1 } else { pkid + 1 };
        let mut subscribe = Subscribe::new(dps::RESPONSE_FILTER, QoS::AtLeastOnce);
        subscribe.pkid = pkid;
        self.send(now, Packet::Subscribe(subscribe));
        self.ping_sent = None;
        self.phase = Phase::Handshake {
            since: now,
            stage: Stage::ConnAck {
                subscribe_pkid: pkid,
            },
        };
    }

    pub(super) fn on_connack(&mut self, now: Instant, ack: ConnAck) {
        let Phase::Handshake {
            stage: Stage::ConnAck { subscribe_pkid },
            ..
        } = self.phase
        else {
            return self.unexpected(now, &Packet::ConnAck(ack));
        };
        match ack.code {
            ConnectReturnCode::Success => {
                self.phase = Phase::Handshake {
                    since: now,
                    stage: Stage::SubAck {
                        pkid: subscribe_pkid,
                    },
                };
                if !self.connected_reported {
                    self.connected_reported = true;
                    self.callouts.push_back(Callout::Status {
                        status: ReplyStatus::Connected,
                        retry_after: self.retry_after,
                    });
                }
            }
            // the server is there but cannot serve now: like a dropped connection
            ConnectReturnCode::ServiceUnavailable => {
                self.fault(now, Error::ConnAckRefused(connack_code(ack.code)))
            }
            code => {
                self.callouts.push_back(Callout::KeyUnauthorized);
                self.fail(Error::ConnAckRefused(connack_code(code)));
            }
        }
    }

    pub(super) fn on_suback(&mut self, now: Instant, ack: SubAck) {
        match self.phase {
            Phase::Handshake {
                stage: Stage::SubAck { pkid },
                ..
            } if ack.pkid == pkid => {}
            _ => return self.unexpected(now, &Packet::SubAck(ack)),
        }
        if ack
            .return_codes
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            self.fail(Error::SubAckRefused);
        } else {
            self.phase = Phase::Ready;
            self.ping_sent = None;
            self.tick_ready(now);
        }
    }

    /// A packet the server may not send now: the connection is broken.
    pub(super) fn unexpected(&mut self, now: Instant, packet: &Packet) {
        let what = describe(packet);
        self.fault(now, Error::Protocol(format!("unexpected {what}")));
    }
}

pub(super) fn connack_code(code: ConnectReturnCode) -> u8 {
    match code {
        ConnectReturnCode::Success => 0,
        ConnectReturnCode::RefusedProtocolVersion => 1,
        ConnectReturnCode::BadClientId => 2,
        ConnectReturnCode::ServiceUnavailable => 3,
        ConnectReturnCode::BadUserNamePassword => 4,
        ConnectReturnCode::NotAuthorized => 5,
    }
}
