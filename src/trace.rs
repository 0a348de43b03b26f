//! The packet trace (`set_trace`): one line per packet, never a password or a body. Next to
//! [`crate::secret`] because it is the other half of keeping the SAS token out of logs: an
//! outgoing packet travels as a [`Wire`], whose `Debug` is this trace line, so no `{:?}` of a
//! session action can print the CONNECT password.

use std::fmt;

use rumqttc::mqttbytes::v4::Packet;

/// An outgoing packet. `Debug` redacts like the trace; only the network layer unwraps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Wire(Packet);

impl Wire {
    pub fn new(packet: Packet) -> Wire {
        Wire(packet)
    }

    pub fn packet(&self) -> &Packet {
        &self.0
    }

    /// The packet itself, for the one place that encodes it.
    pub fn into_packet(self) -> Packet {
        self.0
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

/// One trace line's worth of a packet: type, topic, sizes; never a password or a body.
pub fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Connect(c) => {
            let (user, password) = match &c.login {
                Some(l) => (l.username.as_str(), l.password.len()),
                None => ("", 0),
            };
            let password = match password {
                0 => "none".to_owned(),
                n => format!("<redacted {n} bytes>"),
            };
            format!(
                "CONNECT client_id={:?} username={user:?} password={password} keep_alive={} clean_session={} ({} bytes)",
                c.client_id,
                c.keep_alive,
                c.clean_session,
                packet.size()
            )
        }
        Packet::ConnAck(a) => format!("CONNACK code={:?}", a.code),
        Packet::Subscribe(s) => {
            let filters: Vec<_> = s
                .filters
                .iter()
                .map(|f| format!("{} qos{}", f.path, f.qos as u8))
                .collect();
            format!("SUBSCRIBE pkid={} {}", s.pkid, filters.join(", "))
        }
        Packet::SubAck(s) => format!("SUBACK pkid={} codes={:?}", s.pkid, s.return_codes),
        Packet::Publish(p) => format!(
            "PUBLISH qos{} pkid={} topic={:?} payload {} bytes",
            p.qos as u8,
            p.pkid,
            p.topic,
            p.payload.len()
        ),
        Packet::PubAck(a) => format!("PUBACK pkid={}", a.pkid),
        Packet::PingReq => "PINGREQ".to_owned(),
        Packet::PingResp => "PINGRESP".to_owned(),
        Packet::Disconnect => "DISCONNECT".to_owned(),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Connect;

    #[test]
    fn no_debug_of_a_connect_shows_the_password() {
        let token = "SharedAccessSignature sr=x&sig=abc";
        let mut c = Connect::new("dev1");
        c.set_login("scope/registrations/dev1", token);
        let wire = Wire::new(Packet::Connect(c));
        for text in [
            format!("{wire:?}"),
            format!("{:?}", Some(&wire)),
            describe(wire.packet()),
        ] {
            assert!(!text.contains("sig=abc"), "{text}");
            assert!(text.contains("password=<redacted 34 bytes>"), "{text}");
            assert!(text.contains("client_id=\"dev1\""), "{text}");
        }
    }
}
