//! What happens when time passes (time is the `now` argument, never read here): the first
//! connection, the end of a backoff, the handshake and reply timeouts, keep-alive, a pending
//! request sent once subscribed, and the budget's hard deadline, which ends a run in any phase.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::Packet;

use super::machine::Session;
use super::types::{Callout, Phase, Request, Stage};
use crate::error::Error;

impl Session {
    /// Advances timers: first connection, reconnect backoff, timeouts, keep-alive, the retry
    /// deadline, and sends a pending request once subscribed.
    pub fn tick(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Closed | Phase::Down) {
            return;
        }
        if let Some(spent) = self
            .budget
            .expired(now, &self.settings.retry, self.waiting(now))
        {
            return self.fail(spent);
        }
        match self.phase {
            Phase::Disconnected => self.begin_connect(now),
            Phase::Backoff { until } if now >= until => self.begin_connect(now),
            Phase::Handshake { since, stage }
                if now.saturating_duration_since(since) >= self.settings.reply_timeout =>
            {
                self.fault(
                    now,
                    Error::Timeout {
                        waiting_for: stage.awaited(),
                        after: self.settings.reply_timeout,
                    },
                );
            }
            Phase::Ready => self.tick_ready(now),
            _ => {}
        }
    }

    /// What the session is waiting for from the server at `now`, and since how long: the
    /// error a deadline cuts short.
    fn waiting(&self, now: Instant) -> Option<Error> {
        let (waiting_for, since) = match (&self.phase, &self.request) {
            (Phase::Handshake { since, stage }, _) => (stage.awaited(), *since),
            (Phase::Ready, Request::Sent { kind, at, .. }) => (kind.awaited(), *at),
            _ => return None,
        };
        Some(Error::Timeout {
            waiting_for,
            after: now.saturating_duration_since(since),
        })
    }

    pub(super) fn tick_ready(&mut self, now: Instant) {
        if let Request::Sent { kind, at, .. } = self.request {
            if now.saturating_duration_since(at) >= self.settings.reply_timeout {
                return self.fault(
                    now,
                    Error::Timeout {
                        waiting_for: kind.awaited(),
                        after: self.settings.reply_timeout,
                    },
                );
            }
        }
        let keep_alive = Duration::from_secs(u64::from(self.settings.keep_alive));
        if !keep_alive.is_zero() {
            match (self.ping_sent, self.last_tx) {
                (Some(sent), _) if now.saturating_duration_since(sent) >= keep_alive => {
                    return self.fault(
                        now,
                        Error::Timeout {
                            waiting_for: "PINGRESP",
                            after: keep_alive,
                        },
                    );
                }
                (None, Some(last)) if now.saturating_duration_since(last) >= keep_alive => {
                    self.send(now, Packet::PingReq);
                    self.ping_sent = Some(now);
                }
                _ => {}
            }
        }
        if let Request::Pending(kind) = self.request {
            self.request = Request::AwaitPayload(kind);
            self.callouts.push_back(Callout::Payload(self.ticket()));
        }
    }
}

impl Stage {
    fn awaited(self) -> &'static str {
        match self {
            Stage::ConnAck { .. } => "CONNACK",
            Stage::SubAck { .. } => "SUBACK",
        }
    }
}
