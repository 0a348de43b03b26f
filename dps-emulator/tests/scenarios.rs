//! Each scenario knob, seen from a device.

mod common;
use common::*;
use dps_emulator::scenario::{DropAfter, ErrorReply, Final, Scenario, Stage};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use std::time::{Duration, Instant};

/// An emulator where "sym1" (symmetric key) follows `sc`.
fn with(sc: Scenario) -> (dps_emulator::Emulator, dps_emulator::Pki) {
    emulator(&[], |c| c.with_scenario("sym1", sc))
}

async fn started(emu: &dps_emulator::Emulator, pki: &dps_emulator::Pki) -> Client {
    let mut c = Client::open(Transport::Tls, emu, pki, None).await.unwrap();
    c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    c
}

fn statuses(r: &[Reply]) -> Vec<u16> {
    r.iter().map(|r| r.status).collect()
}

fn error_body_ok(r: &Reply, code: u64) {
    assert_eq!(r.body["errorCode"], code, "{:?}", r.body);
    assert_eq!(r.body["trackingId"].as_str().unwrap().len(), 36);
    assert!(r.body["message"].is_string());
    assert!(r.body["timestampUtc"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn retry_after_is_configurable_or_omitted() {
    let (emu, pki) = with(Scenario {
        retry_after: Some(7),
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    let r = c.register_to_end("sym1").await;
    assert_eq!(r[0].retry_after(), Some(7));
    assert_eq!(r[1].retry_after(), Some(7));
    assert_eq!(r[2].retry_after(), None);

    let (emu, pki) = with(Scenario {
        retry_after: None,
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    let r = c.register_to_end("sym1").await;
    assert!(r.iter().all(|r| r.retry_after().is_none()));
    assert_eq!(r[0].topic, "$dps/registrations/res/202/?$rid=1");
}

#[tokio::test]
async fn polls_before_assigned() {
    for k in [0, 3] {
        let (emu, pki) = with(Scenario {
            polls_before_assigned: k,
            ..Scenario::default()
        });
        let mut c = started(&emu, &pki).await;
        let r = c.register_to_end("sym1").await;
        let mut want = vec![202; 1 + k as usize];
        want.push(200);
        assert_eq!(statuses(&r), want);
        let op = r[0].body["operationId"].as_str().unwrap();
        assert!(r.iter().all(|x| x.body["operationId"] == op));
        assert_eq!(r[0].body["status"], "assigning");
    }
}

#[tokio::test]
async fn throttle_429_then_normal() {
    let (emu, pki) = with(Scenario {
        throttle_429: 2,
        retry_after: Some(2),
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    for rid in ["1", "2"] {
        c.register(rid, "sym1").await.unwrap();
        let r = c.reply(WAIT).await.unwrap();
        assert_eq!(
            (r.status, r.rid(), r.retry_after()),
            (429, Some(rid), Some(2))
        );
        error_body_ok(&r, 429001);
    }
    let r = c.register_to_end("sym1").await;
    assert_eq!(statuses(&r), vec![202, 202, 200]);
}

#[tokio::test]
async fn error_replies_on_register_and_poll() {
    for (status, code) in [
        (400u16, 400004u64),
        (401, 401002),
        (404, 404001),
        (500, 500000),
        (503, 503001),
    ] {
        let (emu, pki) = with(Scenario {
            error: Some(ErrorReply {
                status,
                error_code: code as u32,
                message: "injected".into(),
                on: Stage::Register,
                times: None,
            }),
            ..Scenario::default()
        });
        let mut c = started(&emu, &pki).await;
        let r = c.register_to_end("sym1").await;
        assert_eq!(statuses(&r), vec![status]);
        error_body_ok(&r[0], code);
        assert_eq!(r[0].body["message"], "injected");
    }
    // on poll, once: the next poll succeeds
    let (emu, pki) = with(Scenario {
        error: Some(ErrorReply {
            status: 500,
            error_code: 500000,
            message: "poll broke".into(),
            on: Stage::Poll,
            times: Some(1),
        }),
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    let r = c.register_to_end("sym1").await;
    assert_eq!(statuses(&r), vec![202, 500]);
    let op = r[0].body["operationId"].as_str().unwrap();
    c.poll("10", op).await.unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap().status, 202);
    c.poll("11", op).await.unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap().status, 200);
}

#[tokio::test]
async fn final_failed_and_disabled() {
    let (emu, pki) = with(Scenario {
        final_status: Final::Failed {
            error_code: 400209,
            message: "no hub".into(),
        },
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    let r = c.register_to_end("sym1").await;
    let last = r.last().unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(last.body["status"], "failed");
    assert_eq!(last.body["registrationState"]["errorCode"], 400209);
    assert_eq!(last.body["registrationState"]["errorMessage"], "no hub");

    let (emu, pki) = with(Scenario {
        final_status: Final::Disabled,
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    let r = c.register_to_end("sym1").await;
    assert_eq!(r.last().unwrap().body["status"], "disabled");
}

#[tokio::test]
async fn assigned_state_is_complete_and_payload_echoed() {
    let (emu, pki) = with(Scenario {
        assigned_hub: "my-hub.example.net".into(),
        device_id: Some("renamed".into()),
        polls_before_assigned: 0,
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    c.publish(
        "$dps/registrations/PUT/iotdps-register/?$rid=a",
        br#"{"registrationId":"sym1","payload":{"modelId":"dtmi:x;1"}}"#,
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    // QoS 1 request: PUBACK first, then the reply
    match c.recv(WAIT).await.unwrap() {
        rumqttc::mqttbytes::v4::Packet::PubAck(_) => {}
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let r = c.reply(WAIT).await.unwrap();
    let op = r.body["operationId"].as_str().unwrap().to_string();
    c.poll("b", &op).await.unwrap();
    let fin = c.reply(WAIT).await.unwrap();
    assert_eq!(fin.status, 200);
    assert_eq!(fin.rid(), Some("b"));
    let rs = &fin.body["registrationState"];
    assert_eq!(fin.body["operationId"], op.as_str());
    assert_eq!(fin.body["status"], "assigned");
    assert_eq!(rs["registrationId"], "sym1");
    assert_eq!(rs["assignedHub"], "my-hub.example.net");
    assert_eq!(rs["deviceId"], "renamed");
    assert_eq!(rs["status"], "assigned");
    assert_eq!(rs["substatus"], "initialAssignment");
    assert_eq!(rs["payload"], serde_json::json!({"modelId":"dtmi:x;1"}));
    for k in ["createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"] {
        assert!(rs[k].is_string(), "{k} in {rs}");
    }
}

#[tokio::test]
async fn unknown_operation_gets_404() {
    let (emu, pki) = with(Scenario::default());
    let mut c = started(&emu, &pki).await;
    c.poll("1", "4.nope.nope").await.unwrap();
    let r = c.reply(WAIT).await.unwrap();
    assert_eq!(r.status, 404);
    error_body_ok(&r, 404002);
}

#[tokio::test]
async fn connack_refusal() {
    let (emu, pki) = with(Scenario {
        connack_refuse: Some(3),
        ..Scenario::default()
    });
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    assert_eq!(
        c.connect("sym1", Some(&sas_for("sym1", KEY))).await,
        Ok(ConnectReturnCode::ServiceUnavailable)
    );
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn connack_refusal_for_the_first_connections_only() {
    let (emu, pki) = with(Scenario {
        connack_refuse: Some(3),
        connack_times: Some(2),
        ..Scenario::default()
    });
    for n in 1..=3 {
        let mut c = Client::open(Transport::Tls, &emu, &pki, None)
            .await
            .unwrap();
        let want = match n {
            1 | 2 => ConnectReturnCode::ServiceUnavailable,
            _ => ConnectReturnCode::Success,
        };
        assert_eq!(
            c.connect("sym1", Some(&sas_for("sym1", KEY))).await,
            Ok(want),
            "connection {n}"
        );
    }
}

#[tokio::test]
async fn suback_failure() {
    let (emu, pki) = with(Scenario {
        suback_fail: true,
        ..Scenario::default()
    });
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.connect("sym1", Some(&sas_for("sym1", KEY)))
        .await
        .unwrap();
    assert_eq!(c.subscribe().await, Ok(vec![SubscribeReasonCode::Failure]));
}

#[tokio::test]
async fn other_subscriptions_are_refused() {
    let (emu, pki) = with(Scenario::default());
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.connect("sym1", Some(&sas_for("sym1", KEY)))
        .await
        .unwrap();
    let mut s = rumqttc::mqttbytes::v4::Subscribe::new("devices/#", QoS::AtLeastOnce);
    s.pkid = 9;
    c.send(rumqttc::mqttbytes::v4::Packet::Subscribe(s))
        .await
        .unwrap();
    match c.recv(WAIT).await.unwrap() {
        rumqttc::mqttbytes::v4::Packet::SubAck(a) => {
            assert_eq!(
                (a.pkid, a.return_codes),
                (9, vec![SubscribeReasonCode::Failure])
            )
        }
        other => panic!("{other:?}"),
    }
}

fn drop_at(stage: Stage, always: bool) -> Scenario {
    Scenario {
        drop_after: Some(DropAfter { stage, always }),
        ..Scenario::default()
    }
}

#[tokio::test]
async fn drop_after_connect_once_then_always() {
    let (emu, pki) = with(drop_at(Stage::Connect, false));
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    assert_eq!(
        c.connect("sym1", Some(&sas_for("sym1", KEY))).await,
        Err(RecvError::Closed)
    );
    let mut c = started(&emu, &pki).await;
    assert_eq!(c.register_to_end("sym1").await.last().unwrap().status, 200);

    let (emu, pki) = with(drop_at(Stage::Connect, true));
    for _ in 0..2 {
        let mut c = Client::open(Transport::Tls, &emu, &pki, None)
            .await
            .unwrap();
        assert_eq!(
            c.connect("sym1", Some(&sas_for("sym1", KEY))).await,
            Err(RecvError::Closed)
        );
    }
}

#[tokio::test]
async fn drop_after_subscribe_once() {
    let (emu, pki) = with(drop_at(Stage::Subscribe, false));
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    c.connect("sym1", Some(&sas_for("sym1", KEY)))
        .await
        .unwrap();
    assert_eq!(c.subscribe().await, Err(RecvError::Closed));
    let mut c = started(&emu, &pki).await;
    assert_eq!(c.register_to_end("sym1").await.last().unwrap().status, 200);
}

#[tokio::test]
async fn drop_after_register_once() {
    let (emu, pki) = with(drop_at(Stage::Register, false));
    let mut c = started(&emu, &pki).await;
    c.register("1", "sym1").await.unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap_err(), RecvError::Closed);
    let mut c = started(&emu, &pki).await;
    assert_eq!(c.register_to_end("sym1").await.last().unwrap().status, 200);
}

#[tokio::test]
async fn drop_after_poll_once_and_the_operation_survives_the_reconnect() {
    let (emu, pki) = with(drop_at(Stage::Poll, false));
    let mut c = started(&emu, &pki).await;
    c.register("1", "sym1").await.unwrap();
    let op = c.reply(WAIT).await.unwrap().body["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    c.poll("2", &op).await.unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap_err(), RecvError::Closed);
    // a new connection polls the same operation: it is still there (the dropped poll did not
    // count)
    let mut c = started(&emu, &pki).await;
    c.poll("3", &op).await.unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap().status, 202);
    c.poll("4", &op).await.unwrap();
    let r = c.reply(WAIT).await.unwrap();
    assert_eq!((r.status, r.rid()), (200, Some("4")));
}

#[tokio::test]
async fn drop_after_poll_always() {
    let (emu, pki) = with(drop_at(Stage::Poll, true));
    let mut c = started(&emu, &pki).await;
    c.register("1", "sym1").await.unwrap();
    let op = c.reply(WAIT).await.unwrap().body["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        c.poll("2", &op).await.unwrap();
        assert_eq!(c.reply(WAIT).await.unwrap_err(), RecvError::Closed);
        c = started(&emu, &pki).await;
    }
}

#[tokio::test]
async fn delay_every_packet() {
    let (emu, pki) = with(Scenario {
        delay_ms: 300,
        ..Scenario::default()
    });
    let t = Instant::now();
    let mut c = started(&emu, &pki).await; // CONNACK + SUBACK
    c.register("1", "sym1").await.unwrap();
    c.reply(WAIT).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn never_reply() {
    let (emu, pki) = with(Scenario {
        never_reply: true,
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    c.register("1", "sym1").await.unwrap();
    assert_eq!(
        c.reply(Duration::from_millis(1500)).await.unwrap_err(),
        RecvError::Timeout
    );
    assert!(wait_log(&emu, "not answered (scenario never_reply)", WAIT).await);
}

#[tokio::test]
async fn reordered_query_parameters() {
    let (emu, pki) = with(Scenario {
        reordered_query: true,
        retry_after: Some(3),
        ..Scenario::default()
    });
    let mut c = started(&emu, &pki).await;
    c.register("1", "sym1").await.unwrap();
    let r = c.reply(WAIT).await.unwrap();
    assert_eq!(r.topic, "$dps/registrations/res/202/?retry-after=3&$rid=1");
}

#[tokio::test]
async fn rid_is_echoed_verbatim_and_poll_params_in_any_order() {
    let (emu, pki) = with(Scenario::default());
    let mut c = started(&emu, &pki).await;
    let rid = "0f9a-Élan_~.x";
    c.register(rid, "sym1").await.unwrap();
    let r = c.reply(WAIT).await.unwrap();
    assert_eq!(r.rid(), Some(rid));
    let op = r.body["operationId"].as_str().unwrap();
    c.publish(
        &format!("$dps/registrations/GET/iotdps-get-operationstatus/?operationId={op}&$rid=77"),
        b"{}",
        QoS::AtMostOnce,
    )
    .await
    .unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap().rid(), Some("77"));
}

#[tokio::test]
async fn replies_go_only_to_the_asking_connection() {
    let (emu, pki) = with(Scenario::default());
    let mut a = started(&emu, &pki).await;
    let mut b = started(&emu, &pki).await;
    a.register("1", "sym1").await.unwrap();
    assert_eq!(a.reply(WAIT).await.unwrap().status, 202);
    assert_eq!(
        b.reply(Duration::from_millis(500)).await.unwrap_err(),
        RecvError::Timeout
    );
}

#[tokio::test]
async fn scenarios_apply_per_registration_id() {
    let (emu, pki) = emulator(&[], |c| {
        c.with_scenario(
            "sym1",
            Scenario {
                final_status: Final::Disabled,
                ..Scenario::default()
            },
        )
        .with_default_scenario(Scenario {
            polls_before_assigned: 0,
            ..Scenario::default()
        })
    });
    let mut c = started(&emu, &pki).await;
    assert_eq!(
        c.register_to_end("sym1").await.last().unwrap().body["status"],
        "disabled"
    );
    let key = dps_emulator::sas::derive_device_key(GROUP_KEY, "other");
    let mut o = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    o.start("other", Some(&sas_for("other", &key))).await;
    let r = o.register_to_end("other").await;
    assert_eq!(statuses(&r), vec![202, 200]);
    assert_eq!(r[1].body["status"], "assigned");
}

/// CONNECT and SUBSCRIBE sent back to back: with `latency_ms` both answers travel together
/// (one latency); with `delay_ms` the connection waits for each (two).
async fn pipelined_connect_subscribe(sc: Scenario) -> Duration {
    use rumqttc::mqttbytes::v4::{Packet, Subscribe};
    let (emu, pki) = with(sc);
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    let t = Instant::now();
    let connect = Client::connect_packet("sym1", Some(&sas_for("sym1", KEY)));
    let mut s = Subscribe::new("$dps/registrations/res/#", QoS::AtLeastOnce);
    s.pkid = 1;
    c.send(Packet::Connect(connect)).await.unwrap();
    c.send(Packet::Subscribe(s)).await.unwrap();
    assert!(matches!(c.recv(WAIT).await.unwrap(), Packet::ConnAck(_)));
    assert!(matches!(c.recv(WAIT).await.unwrap(), Packet::SubAck(_)));
    t.elapsed()
}

#[tokio::test]
async fn latency_lets_pipelined_answers_overlap() {
    let both = pipelined_connect_subscribe(Scenario {
        latency_ms: 300,
        ..Scenario::default()
    })
    .await;
    assert!(
        both >= Duration::from_millis(290) && both < Duration::from_millis(550),
        "{both:?}"
    );
    let both = pipelined_connect_subscribe(Scenario {
        delay_ms: 300,
        ..Scenario::default()
    })
    .await;
    assert!(both >= Duration::from_millis(590), "{both:?}");
}
