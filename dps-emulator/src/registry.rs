//! What the emulator remembers per registration id, across connections: operations, request
//! counts for throttling and injected errors, and which one-time drops already happened.

use crate::dps::{self, Outcome, Request};
use crate::issue::Issuer;
use crate::scenario::{Scenario, Stage};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

/// Operations kept per registration id; older ones are forgotten (a misbehaving client that
/// registers in a loop cannot grow memory without bound).
const MAX_OPERATIONS: usize = 16;

struct Operation {
    id: String,
    polls: u32,
    created: String,
    etag: String,
    payload: Option<Value>,
    /// The chain issued for the register request's CSR, sent with the assignment.
    issued_chain: Option<Vec<String>>,
}

#[derive(Default)]
struct RegState {
    connections: u64,
    requests: u64,
    errors_served: u32,
    drops_done: HashSet<Stage>,
    operations: VecDeque<Operation>,
}

/// A reply to a register or poll request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u32>,
    pub(crate) body: String,
    /// For the log line: the operation id or the error.
    pub(crate) note: String,
}

/// What a reply depends on besides the registration id and its scenario.
pub(crate) struct Context<'a> {
    /// The api-version of the connection's CONNECT user name.
    pub(crate) api_version: &'a str,
    /// Signs certificates for CSRs.
    pub(crate) issuer: &'a Issuer,
}

#[derive(Default)]
pub(crate) struct Registry {
    regs: Mutex<HashMap<String, RegState>>,
}

impl Registry {
    fn with<R>(&self, regid: &str, f: impl FnOnce(&mut RegState) -> R) -> R {
        // A poisoned lock only means another connection's task panicked mid-update; the
        // state is still usable for an emulator.
        let mut regs = self.regs.lock().unwrap_or_else(|p| p.into_inner());
        f(regs.entry(regid.to_string()).or_default())
    }

    /// Counts an authenticated connection; returns how many this registration id has had.
    pub(crate) fn connected(&self, regid: &str) -> u64 {
        self.with(regid, |s| {
            s.connections += 1;
            s.connections
        })
    }

    /// Should the connection be dropped at `stage`? `always` drops every time; otherwise only
    /// the first time this registration id reaches the stage.
    pub(crate) fn should_drop(&self, regid: &str, sc: &Scenario, stage: Stage) -> bool {
        match sc.drop_after {
            Some(d) if d.stage == stage => {
                d.always || self.with(regid, |s| s.drops_done.insert(stage))
            }
            _ => false,
        }
    }

    /// Answers a register or poll request of `regid` according to its scenario.
    pub(crate) fn answer(
        &self,
        regid: &str,
        req: &Request,
        body: &[u8],
        sc: &Scenario,
        cx: &Context<'_>,
    ) -> Reply {
        self.with(regid, |st| {
            st.requests += 1;
            if st.requests <= u64::from(sc.throttle_429) {
                return Reply {
                    status: 429,
                    retry_after: Some(sc.retry_after.unwrap_or(1)),
                    body: dps::error_body(
                        429001,
                        "Operations are being throttled for this tenant.",
                    ),
                    note: format!("throttled ({} of {})", st.requests, sc.throttle_429),
                };
            }
            let stage = match req {
                Request::Register { .. } => Stage::Register,
                Request::Poll { .. } => Stage::Poll,
            };
            if let Some(e) = &sc.error {
                if e.on == stage && e.times.map_or(true, |t| st.errors_served < t) {
                    st.errors_served += 1;
                    return Reply {
                        status: e.status,
                        retry_after: None,
                        body: dps::error_body(e.error_code, &e.message),
                        note: format!("injected error {}", e.error_code),
                    };
                }
            }
            match req {
                Request::Register { .. } => match dps::parse_register_body(body, regid) {
                    Err(why) => Reply {
                        status: 400,
                        retry_after: None,
                        body: dps::error_body(400004, &why),
                        note: why,
                    },
                    Ok(body) => {
                        let issued_chain = match &body.csr {
                            None => None,
                            Some(csr) => match cx.issuer.issue(csr, regid, cx.api_version) {
                                Ok(chain) => Some(chain),
                                Err(r) => {
                                    return Reply {
                                        status: r.status,
                                        retry_after: None,
                                        body: dps::error_body(r.error_code, &r.message),
                                        note: format!(
                                            "csr refused, {}: {}",
                                            r.error_code, r.message
                                        ),
                                    }
                                }
                            },
                        };
                        let op = Operation {
                            id: dps::new_operation_id(),
                            polls: 0,
                            created: dps::now_rfc3339(),
                            etag: dps::new_etag(),
                            payload: body.payload,
                            issued_chain,
                        };
                        let issued = if op.issued_chain.is_some() {
                            ", certificate issued for the csr"
                        } else {
                            ""
                        };
                        let reply = Reply {
                            status: 202,
                            retry_after: sc.retry_after,
                            body: dps::assigning_body(&op.id),
                            note: format!("operation {}{issued}", op.id),
                        };
                        if st.operations.len() >= MAX_OPERATIONS {
                            st.operations.pop_front();
                        }
                        st.operations.push_back(op);
                        reply
                    }
                },
                Request::Poll { .. } if dps::body_has_csr(body) => {
                    let why = "csr is not accepted on the operation-status request".to_string();
                    Reply {
                        status: 400,
                        retry_after: None,
                        body: dps::error_body(crate::issue::ERROR_BAD_CSR, &why),
                        note: why,
                    }
                }
                Request::Poll { operation_id, .. } => {
                    let Some(op) = st.operations.iter_mut().find(|o| &o.id == operation_id) else {
                        return Reply {
                            status: 404,
                            retry_after: None,
                            body: dps::error_body(
                                404002,
                                &format!("Operation {operation_id} not found for {regid}."),
                            ),
                            note: format!("unknown operation {operation_id}"),
                        };
                    };
                    op.polls += 1;
                    if op.polls <= sc.polls_before_assigned {
                        return Reply {
                            status: 202,
                            retry_after: sc.retry_after,
                            body: dps::assigning_body(&op.id),
                            note: format!("poll {} of {}", op.polls, sc.polls_before_assigned),
                        };
                    }
                    let device_id = sc.device_id.as_deref().unwrap_or(regid);
                    Reply {
                        status: 200,
                        retry_after: None,
                        body: dps::final_body(&Outcome {
                            operation_id: &op.id,
                            regid,
                            created: &op.created,
                            final_status: &sc.final_status,
                            assigned_hub: &sc.assigned_hub,
                            device_id,
                            etag: &op.etag,
                            payload: op.payload.as_ref(),
                            connection_profile: sc.connection_profile.as_deref(),
                            issued_chain: sc
                                .issued_certificate_chain
                                .as_deref()
                                .or(op.issued_chain.as_deref()),
                        }),
                        note: format!("{:?}", sc.final_status).to_lowercase(),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{DropAfter, ErrorReply};

    fn issuer() -> Issuer {
        Issuer::new(&crate::Pki::generate(&[])).unwrap()
    }

    fn cx(issuer: &Issuer) -> Context<'_> {
        Context {
            api_version: "2021-06-01",
            issuer,
        }
    }

    fn reg(rid: &str) -> Request {
        Request::Register { rid: rid.into() }
    }

    fn op_of(r: &Reply) -> String {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["operationId"].as_str().unwrap().to_string()
    }

    #[test]
    fn register_then_polls_then_assigned() {
        let (r, issuer) = (Registry::default(), issuer());
        let cx = cx(&issuer);
        let sc = Scenario {
            polls_before_assigned: 2,
            ..Scenario::default()
        };
        let a = r.answer("d", &reg("1"), br#"{"registrationId":"d"}"#, &sc, &cx);
        assert_eq!((a.status, a.retry_after), (202, Some(1)));
        let poll = Request::Poll {
            rid: "2".into(),
            operation_id: op_of(&a),
        };
        assert_eq!(r.answer("d", &poll, b"", &sc, &cx).status, 202);
        assert_eq!(r.answer("d", &poll, b"", &sc, &cx).status, 202);
        let fin = r.answer("d", &poll, b"", &sc, &cx);
        assert_eq!((fin.status, fin.retry_after), (200, None));
        let unknown = Request::Poll {
            rid: "3".into(),
            operation_id: "nope".into(),
        };
        assert_eq!(r.answer("d", &unknown, b"", &sc, &cx).status, 404);
    }

    #[test]
    fn throttle_then_error_times_then_normal() {
        let (r, issuer) = (Registry::default(), issuer());
        let cx = cx(&issuer);
        let sc = Scenario {
            throttle_429: 2,
            retry_after: None,
            error: Some(ErrorReply {
                status: 503,
                error_code: 503000,
                message: "busy".into(),
                on: Stage::Register,
                times: Some(1),
            }),
            ..Scenario::default()
        };
        let t = r.answer("d", &reg("1"), b"", &sc, &cx);
        assert_eq!((t.status, t.retry_after), (429, Some(1)));
        assert_eq!(r.answer("d", &reg("2"), b"", &sc, &cx).status, 429);
        assert_eq!(r.answer("d", &reg("3"), b"", &sc, &cx).status, 503);
        assert_eq!(r.answer("d", &reg("4"), b"", &sc, &cx).status, 202);
        assert_eq!(r.answer("d", &reg("5"), b"not json", &sc, &cx).status, 400);
    }

    #[test]
    fn drop_once_or_always() {
        let r = Registry::default();
        let once = Scenario {
            drop_after: Some(DropAfter {
                stage: Stage::Poll,
                always: false,
            }),
            ..Scenario::default()
        };
        assert!(!r.should_drop("d", &once, Stage::Register));
        assert!(r.should_drop("d", &once, Stage::Poll));
        assert!(!r.should_drop("d", &once, Stage::Poll));
        let always = Scenario {
            drop_after: Some(DropAfter {
                stage: Stage::Poll,
                always: true,
            }),
            ..Scenario::default()
        };
        assert!(r.should_drop("d", &always, Stage::Poll));
        assert!(r.should_drop("d", &always, Stage::Poll));
    }
}
