//! Certificate issuance: a register body with `csr` under api-version 2025-07-01-preview gets a
//! chain [leaf, intermediate] for the CSR's key, the device can then connect with it; the ways
//! a CSR is refused; and the registrationState fields beside it (connectionProfile, substatus,
//! etag). The CSRs are made with rcgen, as a device would.

mod common;
use base64::Engine as _;
use common::*;
use dps_emulator::{sas, DeviceCert, Emulator, Final, Pki, Scenario};
use rcgen::{CertificateParams, DnType, KeyPair};
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use rumqttc::mqttbytes::QoS;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::{json, Value};
use std::sync::Arc;

const CSR_API: &str = "2025-07-01-preview";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A CSR (base64 DER) for `cn` and its key.
fn csr_for(cn: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let csr = p.serialize_request(&key).unwrap();
    (B64.encode(csr.der()), key)
}

fn body_with_csr(regid: &str, csr: &str) -> Vec<u8> {
    json!({"registrationId": regid, "csr": csr})
        .to_string()
        .into_bytes()
}

/// A group-enrolled device connected with a SAS token under `api`, subscribed.
async fn sas_client(t: Transport, emu: &Emulator, pki: &Pki, regid: &str, api: &str) -> Client {
    let key = sas::derive_device_key(GROUP_KEY, regid);
    let mut c = Client::open(t, emu, pki, None).await.unwrap();
    let connect = Client::connect_packet_api(regid, Some(&sas_for(regid, &key)), api);
    assert_eq!(
        c.connect_with(connect).await,
        Ok(ConnectReturnCode::Success)
    );
    assert_eq!(c.subscribe().await.unwrap().len(), 1);
    c
}

fn chain_of(reply: &Reply) -> Vec<Vec<u8>> {
    reply.body["registrationState"]["issuedCertificateChain"]
        .as_array()
        .unwrap_or_else(|| panic!("no issuedCertificateChain in {}", reply.body))
        .iter()
        .map(|c| B64.decode(c.as_str().unwrap()).unwrap())
        .collect()
}

/// Does the chain (leaf first) verify, for client authentication, against `root_ca_pem`?
fn verifies_to(chain: &[Vec<u8>], root_ca_pem: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in dps_emulator::tls::certs_from_pem(root_ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let certs: Vec<CertificateDer> = chain.iter().map(|c| c.clone().into()).collect();
    verifier
        .verify_client_cert(&certs[0], &certs[1..], UnixTime::now())
        .map(|_| ())
}

fn pem_chain(chain: &[Vec<u8>]) -> String {
    chain
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
        .collect()
}

fn error_of(replies: &[Reply]) -> (u16, u64) {
    let last = replies.last().unwrap();
    assert!(
        last.body["trackingId"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{}",
        last.body
    );
    (last.status, last.body["errorCode"].as_u64().unwrap())
}

#[tokio::test]
async fn csr_gets_a_chain_for_its_key_that_the_device_then_connects_with() {
    let (emu, pki) = emulator(&[], |c| c);
    for (t, regid) in [(Transport::Tls, "csr-tls"), (Transport::Wss, "csr-wss")] {
        let (csr, key) = csr_for(regid);
        let mut c = sas_client(t, &emu, &pki, regid, CSR_API).await;
        let replies = c.register_body_to_end(&body_with_csr(regid, &csr)).await;
        let last = replies.last().unwrap();
        assert_eq!(last.status, 200, "{replies:?}");
        assert_eq!(last.body["status"], "assigned");
        let chain = chain_of(last);
        assert_eq!(chain.len(), 2, "[leaf, intermediate]");

        // the leaf is for the CSR's key, with the registration id as CN
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(leaf.public_key().raw, key.public_key_der().as_slice());
        assert_eq!(
            dps_emulator::tls::common_name(&chain[0].clone().into()).as_deref(),
            Some(regid)
        );
        // the second is the emulator's intermediate, and the chain leads to its root
        let int = dps_emulator::tls::certs_from_pem(&pki.intermediate_ca_pem).unwrap();
        assert_eq!(chain[1], int[0].as_ref());
        verifies_to(&chain, &pki.root_ca_pem).expect("issued chain verifies to the root");
        let other_root = Pki::generate(&[]).root_ca_pem;
        assert!(verifies_to(&chain, &other_root).is_err());

        // the device connects with the issued certificate (X.509) and registers again
        let issued = DeviceCert {
            cert_chain_pem: pem_chain(&chain),
            key_pem: key.serialize_pem(),
        };
        let mut x = Client::open(Transport::Tls, &emu, &pki, Some(&issued))
            .await
            .unwrap();
        x.start(regid, None).await;
        let again = x.register_to_end(regid).await;
        assert_eq!(again.last().unwrap().status, 200, "{again:?}");
        assert!(
            again.last().unwrap().body["registrationState"]
                .get("issuedCertificateChain")
                .is_none(),
            "no csr, no chain"
        );
        assert!(
            wait_log(&emu, &format!("{regid}: connected (x509"), WAIT).await,
            "{:?}",
            emu.log_lines()
        );
    }
}

#[tokio::test]
async fn csr_whose_cn_is_not_the_registration_id_gets_400004() {
    let (emu, pki) = emulator(&[], |c| c);
    let (csr, _) = csr_for("someone-else");
    let mut c = sas_client(Transport::Tls, &emu, &pki, "csr-cn", CSR_API).await;
    let replies = c.register_body_to_end(&body_with_csr("csr-cn", &csr)).await;
    assert_eq!(error_of(&replies), (400, 400004));
    let msg = replies[0].body["message"].as_str().unwrap();
    assert!(
        msg.contains("someone-else") && msg.contains("csr-cn"),
        "{msg}"
    );
}

#[tokio::test]
async fn csr_under_an_older_api_version_gets_400011() {
    let (emu, pki) = emulator(&[], |c| c);
    let (csr, _) = csr_for("csr-old");
    for api in ["2021-06-01", "2025-06-30-preview"] {
        let mut c = sas_client(Transport::Tls, &emu, &pki, "csr-old", api).await;
        let replies = c
            .register_body_to_end(&body_with_csr("csr-old", &csr))
            .await;
        assert_eq!(error_of(&replies), (400, 400011), "{api}");
    }
    // a later api-version is fine
    let mut c = sas_client(Transport::Tls, &emu, &pki, "csr-old", "2026-11-02-preview").await;
    let replies = c
        .register_body_to_end(&body_with_csr("csr-old", &csr))
        .await;
    assert_eq!(chain_of(replies.last().unwrap()).len(), 2);
}

#[tokio::test]
async fn malformed_csr_gets_400_and_the_connection_lives_on() {
    let (emu, pki) = emulator(&[], |c| c);
    let (good, _) = csr_for("csr-bad");
    let mut tampered = B64.decode(&good).unwrap();
    *tampered.last_mut().unwrap() ^= 0x55;
    let bodies = [
        body_with_csr("csr-bad", "this is not base64"),
        body_with_csr("csr-bad", &B64.encode(b"not a DER request")),
        body_with_csr("csr-bad", &good[..good.len() / 2]),
        body_with_csr("csr-bad", &B64.encode(&tampered)),
        json!({"registrationId": "csr-bad", "csr": 42})
            .to_string()
            .into_bytes(),
    ];
    let mut c = sas_client(Transport::Tls, &emu, &pki, "csr-bad", CSR_API).await;
    for body in &bodies {
        let replies = c.register_body_to_end(body).await;
        assert_eq!(
            error_of(&replies),
            (400, 400004),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // same connection, a good CSR now
    let replies = c
        .register_body_to_end(&body_with_csr("csr-bad", &good))
        .await;
    assert_eq!(chain_of(replies.last().unwrap()).len(), 2);
}

#[tokio::test]
async fn connection_profile_when_configured_substatus_and_etag_always() {
    let profiled = Scenario {
        connection_profile: Some("mqttV5".into()),
        ..Scenario::default()
    };
    let failed = Scenario {
        final_status: Final::Failed {
            error_code: 400209,
            message: "no hub".into(),
        },
        ..Scenario::default()
    };
    let (emu, pki) = emulator(&[], |c| {
        c.with_scenario("v5-dev", profiled)
            .with_scenario("failing-dev", failed)
    });
    let mut states = Vec::new();
    for (regid, api) in [
        ("v5-dev", "2026-11-02-preview"),
        ("plain-dev", API),
        ("failing-dev", API),
    ] {
        let mut c = sas_client(Transport::Wss, &emu, &pki, regid, api).await;
        let replies = c.register_to_end(regid).await;
        let last = replies.last().unwrap();
        assert_eq!(last.status, 200, "{replies:?}");
        states.push(last.body["registrationState"].clone());
    }
    assert_eq!(states[0]["connectionProfile"], "mqttV5");
    assert!(states[1].get("connectionProfile").is_none());
    assert_eq!(states[2]["status"], "failed");
    for s in &states {
        assert_eq!(s["substatus"], "initialAssignment", "{s}");
        assert!(s["etag"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    }
}

#[tokio::test]
async fn scenario_chain_is_sent_verbatim() {
    let verbatim = vec!["bm90IGEgY2VydGlmaWNhdGU=".to_string(), "%%%".to_string()];
    let sc = Scenario {
        issued_certificate_chain: Some(verbatim.clone()),
        ..Scenario::default()
    };
    let (emu, pki) = emulator(&[], |c| c.with_scenario("liar", sc));
    let (csr, _) = csr_for("liar");
    let mut c = sas_client(Transport::Tls, &emu, &pki, "liar", CSR_API).await;
    let replies = c.register_body_to_end(&body_with_csr("liar", &csr)).await;
    assert_eq!(
        replies.last().unwrap().body["registrationState"]["issuedCertificateChain"],
        json!(verbatim)
    );
}

#[tokio::test]
async fn timeline_shows_the_api_version_and_whether_the_register_body_had_a_csr() {
    let (emu, pki) = emulator(&[], |c| c);
    let (csr, _) = csr_for("wire-dev");
    let mut c = sas_client(Transport::Tls, &emu, &pki, "wire-dev", CSR_API).await;
    c.register_body_to_end(&body_with_csr("wire-dev", &csr))
        .await;
    c.register_to_end("wire-dev").await;
    // a QoS 1 register is marked too
    c.publish(
        "$dps/registrations/PUT/iotdps-register/?$rid=9",
        &body_with_csr("wire-dev", &csr),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    c.reply(WAIT).await.unwrap();
    let tl = emu.timeline();
    let connect = tl
        .iter()
        .find(|e| e.packet == "CONNECT" && e.dir == "in")
        .unwrap();
    assert_eq!(connect.api_version.as_deref(), Some(CSR_API));
    let publishes: Vec<_> = tl
        .iter()
        .filter(|e| e.dir == "in" && e.packet == "PUBLISH")
        .collect();
    let registers: Vec<Option<bool>> = publishes
        .iter()
        .filter(|e| e.topic.as_deref().unwrap().contains("iotdps-register"))
        .map(|e| e.csr)
        .collect();
    assert_eq!(registers, vec![Some(true), Some(false), Some(true)]);
    // the polls (empty bodies here) are marked too
    let polls: Vec<Option<bool>> = publishes
        .iter()
        .filter(|e| e.topic.as_deref().unwrap().contains("operationstatus"))
        .map(|e| e.csr)
        .collect();
    assert_eq!(polls, vec![Some(false); 4]);
    let line: Value = serde_json::to_value(connect).unwrap();
    assert_eq!(line["api_version"], CSR_API);
}

#[tokio::test]
async fn poll_with_csr_gets_400() {
    let (emu, pki) = emulator(&[], |c| c);
    let (csr, _) = csr_for("poll-dev");
    let mut c = sas_client(Transport::Tls, &emu, &pki, "poll-dev", CSR_API).await;
    c.register("1", "poll-dev").await.unwrap();
    let r = c.reply(WAIT).await.unwrap();
    let op = r.body["operationId"].as_str().unwrap().to_string();
    // the SDK sends the register JSON again as the poll body: with csr, refused
    c.publish(
        &format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={op}"),
        &body_with_csr("poll-dev", &csr),
        QoS::AtMostOnce,
    )
    .await
    .unwrap();
    let r = c.reply(WAIT).await.unwrap();
    assert_eq!(
        (r.status, r.body["errorCode"].as_u64()),
        (400, Some(400004))
    );
    // without it the operation goes on
    c.publish(
        &format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId={op}"),
        br#"{"registrationId":"poll-dev"}"#,
        QoS::AtMostOnce,
    )
    .await
    .unwrap();
    assert_eq!(c.reply(WAIT).await.unwrap().status, 202);
}
