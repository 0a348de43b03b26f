//! A reply arrives: acknowledge it, let the classifier (`dps::classify`) say what it is, count a
//! transient one against the budget, hand any other to the caller's parser, and turn the
//! parsed record into what to call back.

use std::time::Instant;

use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish};
use rumqttc::mqttbytes::QoS;

use super::budget::Next;
use super::machine::Session;
use super::types::{Callout, Kind, Outcome, Parsed, ReplyStatus, Request, Ticket};
use crate::dps::body::ServiceError;
use crate::dps::classify::{classify, Verdict};
use crate::dps::info;
use crate::error::Error;

impl Session {
    pub(super) fn on_publish(&mut self, now: Instant, publish: Publish) {
        if publish.qos == QoS::AtLeastOnce {
            self.send(now, Packet::PubAck(PubAck::new(publish.pkid)));
        }
        let (kind, rid) = match self.request {
            Request::Sent { kind, rid, .. } => (kind, Some(rid)),
            _ => (Kind::Register, None),
        };
        let verdict = classify(&publish.topic, publish.qos, &publish.payload, rid);
        if let Verdict::Ignore(why) = &verdict {
            return error!(&self.context, "{why}");
        }
        if let Some(seconds) = verdict.retry_after() {
            self.retry_after = seconds;
        }
        if let Verdict::Transient { status, .. } | Verdict::Parse { status, .. } = &verdict {
            self.last_status = *status;
        }
        self.request = Request::Idle;
        match verdict {
            Verdict::Ignore(_) => {} // logged and returned above
            Verdict::Transient { status, error, .. } => self.on_transient(now, kind, status, error),
            Verdict::Unusable { error, .. } => self.fail(Error::Payload(error)),
            Verdict::Parse {
                status,
                json,
                error,
                ..
            } => {
                self.budget.reset();
                self.pending_service_error = error.map(|error| Error::Service { status, error });
                self.request = Request::AwaitParse;
                self.pending_reply = self.wants_details().then(|| json.clone());
                self.callouts.push_back(Callout::Parse {
                    ticket: self.ticket(),
                    json,
                });
            }
        }
    }

    /// The issued chain is checked with a CSR set; the details are read with a hook set.
    fn wants_details(&self) -> bool {
        self.settings.csr.is_some() || self.settings.report_info
    }

    /// A storm of throttling or server errors is bounded by the retry budget too: the SDK
    /// retries it forever (users report waits of hours), we end it like a fault.
    fn on_transient(
        &mut self,
        now: Instant,
        kind: Kind,
        status: u16,
        service_error: Option<ServiceError>,
    ) {
        let detail = service_error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        let error = Error::Service {
            status,
            error: service_error.unwrap_or_default(),
        };
        let policy = &self.settings.retry;
        if let Next::GiveUp(spent) = self.budget.spend(now, policy, self.rng.f64(), error) {
            return self.fail(spent);
        }
        info!(
            &self.context,
            "DPS replied {status} to the {}{detail}: transient, retry in {} s",
            kind.name(),
            self.retry_after
        );
        self.callouts.push_back(Callout::Status {
            status: ReplyStatus::Transient,
            retry_after: self.retry_after,
        });
    }

    /// The answer to [`Callout::Parse`]: what to call back with the caller's record.
    pub fn parsed(&mut self, ticket: Ticket, parsed: Option<Parsed>) -> Outcome {
        if ticket != self.ticket() || self.request != Request::AwaitParse {
            return Outcome::Nothing;
        }
        self.request = Request::Idle;
        let service = self.pending_service_error.take();
        let body = self.pending_reply.take();
        let Some(parsed) = parsed else {
            self.fail(service.unwrap_or(Error::CallbackReturnedNull("JSON parse")));
            return Outcome::Nothing;
        };
        match parsed.status {
            Some(status @ (ReplyStatus::Assigning | ReplyStatus::Unassigned)) => {
                self.in_progress(status, parsed.operation_id)
            }
            Some(ReplyStatus::Assigned) => self.assigned(body),
            other => {
                let why = match other {
                    Some(s) => format!("the service reported {s:?}"),
                    None => "the parse callback returned an unknown status".to_owned(),
                };
                self.fail(service.unwrap_or(Error::RegistrationFailed(why)));
                Outcome::Nothing
            }
        }
    }

    /// ASSIGNING or UNASSIGNED: keep the first operation id; the caller polls after retry-after.
    fn in_progress(&mut self, status: ReplyStatus, operation_id: Option<String>) -> Outcome {
        let Some(id) = operation_id else {
            self.fail(Error::RegistrationFailed(format!(
                "a {status:?} reply carried no operationId"
            )));
            return Outcome::Nothing;
        };
        if self.operation_id.is_none() {
            self.operation_id = Some(id);
        }
        Outcome::Status {
            status,
            retry_after: self.retry_after,
        }
    }

    /// ASSIGNED: the registration details of the final reply (`body`) for the hook, the issued
    /// chain checked first.
    fn assigned(&mut self, body: Option<String>) -> Outcome {
        if let Some(body) = body {
            let details = match info::assignment(self.last_status, &body) {
                Ok(details) => details,
                Err(e) => {
                    self.fail(Error::IssuedChain(e));
                    return Outcome::Nothing;
                }
            };
            if self.settings.csr.is_some() && details.issued_certificate_chain.is_none() {
                info!(
                    &self.context,
                    "assigned, but DPS issued no certificate for the CSR"
                );
            }
            if self.settings.report_info {
                self.assigned_info = Some(details);
            }
        }
        info!(&self.context, "registration assigned");
        Outcome::Assigned
    }
}
