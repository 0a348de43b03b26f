//! Happy paths over both transports with each credential kind, and every way CONNECT is
//! refused.

mod common;
use common::*;
use dps_emulator::{sas, Pki};
use rumqttc::mqttbytes::v4::ConnectReturnCode;

async fn assigned(c: &mut Client, regid: &str) {
    let replies = c.register_to_end(regid).await;
    let last = replies.last().unwrap();
    assert_eq!(last.status, 200, "{replies:?}");
    assert_eq!(last.body["status"], "assigned");
    assert_eq!(last.body["registrationState"]["deviceId"], regid);
    assert_eq!(
        last.body["registrationState"]["assignedHub"],
        "emulated-hub.azure-devices.net"
    );
    // default scenario: register 202, one poll 202, then 200
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![202, 202, 200]
    );
    assert_eq!(replies[0].retry_after(), Some(1));
}

#[tokio::test]
async fn x509_chain_over_tls_registers() {
    let (emu, pki) = emulator(&["x1"], |c| c);
    let mut c = Client::open(Transport::Tls, &emu, &pki, pki.device("x1"))
        .await
        .unwrap();
    c.start("x1", None).await;
    assigned(&mut c, "x1").await;
}

#[tokio::test]
async fn x509_chain_over_wss_registers() {
    let (emu, pki) = emulator(&["x1"], |c| c);
    let mut c = Client::open(Transport::Wss, &emu, &pki, pki.device("x1"))
        .await
        .unwrap();
    c.start("x1", None).await;
    assigned(&mut c, "x1").await;
}

#[tokio::test]
async fn individual_symmetric_key_over_tls_and_wss_registers() {
    let (emu, pki) = emulator(&[], |c| c);
    for t in [Transport::Tls, Transport::Wss] {
        let mut c = Client::open(t, &emu, &pki, None).await.unwrap();
        c.start("sym1", Some(&sas_for("sym1", KEY))).await;
        assigned(&mut c, "sym1").await;
    }
}

#[tokio::test]
async fn group_symmetric_key_over_tls_and_wss_registers() {
    let (emu, pki) = emulator(&[], |c| c);
    for (t, id) in [(Transport::Tls, "member-a"), (Transport::Wss, "member-b")] {
        let key = sas::derive_device_key(GROUP_KEY, id);
        let mut c = Client::open(t, &emu, &pki, None).await.unwrap();
        c.start(id, Some(&sas_for(id, &key))).await;
        assigned(&mut c, id).await;
    }
}

#[tokio::test]
async fn sas_without_skn_is_accepted() {
    let (emu, pki) = emulator(&[], |c| c);
    let token = sas_for("sym1", KEY).replace("&skn=registration", "");
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    assert_eq!(
        c.connect("sym1", Some(&token)).await,
        Ok(ConnectReturnCode::Success)
    );
}

/// Opens a connection and expects CONNACK 5 for this CONNECT, then the close, and a log line
/// containing `why`.
async fn refused(
    emu: &dps_emulator::Emulator,
    pki: &Pki,
    device: Option<&dps_emulator::DeviceCert>,
    connect: rumqttc::mqttbytes::v4::Connect,
    why: &str,
) {
    let mut c = Client::open(Transport::Tls, emu, pki, device)
        .await
        .unwrap();
    assert_eq!(
        c.connect_with(connect).await,
        Ok(ConnectReturnCode::NotAuthorized)
    );
    assert!(
        c.closed_within(WAIT).await,
        "connection closed after refusal"
    );
    assert!(
        wait_log(emu, why, WAIT).await,
        "log mentions {why:?}: {:#?}",
        emu.log_lines()
    );
}

#[tokio::test]
async fn certificate_with_another_cn_is_refused() {
    let (emu, pki) = emulator(&["x1", "x2"], |c| c);
    refused(
        &emu,
        &pki,
        pki.device("x2"),
        Client::connect_packet("x1", None),
        "certificate CN \"x2\" differs",
    )
    .await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let other = Pki::generate(&["x1"]);
    refused(
        &emu,
        &pki,
        other.device("x1"),
        Client::connect_packet("x1", None),
        "client certificate not trusted",
    )
    .await;
}

#[tokio::test]
async fn x509_disabled_refuses_certificates() {
    let (emu, pki) = emulator(&["x1"], |mut c| {
        c.x509_enabled = false;
        c
    });
    refused(
        &emu,
        &pki,
        pki.device("x1"),
        Client::connect_packet("x1", None),
        "X.509 is disabled",
    )
    .await;
}

#[tokio::test]
async fn sas_with_the_wrong_key_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let token = sas_for("sym1", "b3RoZXIta2V5LW90aGVyLWtleQ==");
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("sym1", Some(&token)),
        "SAS signature matches neither",
    )
    .await;
}

#[tokio::test]
async fn expired_sas_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let token = sas::token(SCOPE, "sym1", KEY, sas::now_unix() - 10);
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("sym1", Some(&token)),
        "SAS token expired",
    )
    .await;
}

#[tokio::test]
async fn malformed_sas_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("sym1", Some("not a token")),
        "SAS token malformed",
    )
    .await;
}

#[tokio::test]
async fn sas_for_another_registration_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let key = sas::derive_device_key(GROUP_KEY, "member-a");
    let token = sas::token(SCOPE, "member-b", &key, sas::now_unix() + 60);
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("member-a", Some(&token)),
        "SAS token sr is",
    )
    .await;
}

#[tokio::test]
async fn client_id_must_equal_the_registration_id() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut connect = Client::connect_packet("sym1", Some(&sas_for("sym1", KEY)));
    connect.client_id = "someone-else".into();
    refused(
        &emu,
        &pki,
        None,
        connect,
        "client id \"someone-else\" differs",
    )
    .await;
}

#[tokio::test]
async fn bad_username_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut connect = Client::connect_packet("sym1", Some(&sas_for("sym1", KEY)));
    connect.set_login("sym1", sas_for("sym1", KEY));
    refused(&emu, &pki, None, connect, "username \"sym1\"").await;
}

#[tokio::test]
async fn wrong_scope_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut connect = Client::connect_packet("sym1", Some(&sas_for("sym1", KEY)));
    connect.set_login(username("0ne99999999", "sym1"), sas_for("sym1", KEY));
    refused(&emu, &pki, None, connect, "ID scope \"0ne99999999\"").await;
}

#[tokio::test]
async fn no_credentials_is_refused() {
    let (emu, pki) = emulator(&[], |c| c);
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("sym1", None),
        "no credentials",
    )
    .await;
}

#[tokio::test]
async fn unknown_registration_without_group_key_is_refused() {
    let (emu, pki) = emulator(&[], |mut c| {
        c.group_keys.clear();
        c
    });
    refused(
        &emu,
        &pki,
        None,
        Client::connect_packet("nobody", Some(&sas_for("nobody", KEY))),
        "no symmetric key configured",
    )
    .await;
}

#[tokio::test]
async fn mqtt_3_1_gets_connack_1() {
    let (emu, pki) = emulator(&[], |c| c);
    let mut c = Client::open(Transport::Tls, &emu, &pki, None)
        .await
        .unwrap();
    // CONNECT "MQIsdp" level 3, clean session, keep-alive 0, client id "sym1"
    let mut pkt = vec![0x10, 18, 0, 6];
    pkt.extend_from_slice(b"MQIsdp");
    pkt.extend_from_slice(&[3, 2, 0, 0, 0, 4]);
    pkt.extend_from_slice(b"sym1");
    c.send_raw(&pkt).await.unwrap();
    match c.recv(WAIT).await {
        Ok(rumqttc::mqttbytes::v4::Packet::ConnAck(a)) => {
            assert_eq!(a.code, ConnectReturnCode::RefusedProtocolVersion)
        }
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    assert!(c.closed_within(WAIT).await);
    assert!(wait_log(&emu, "only MQTT 3.1.1", WAIT).await);
}

#[tokio::test]
async fn tls12_and_tls13_are_both_served() {
    let (emu, pki) = emulator(&[], |c| c);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        for c in dps_emulator::tls::certs_from_pem(&pki.root_ca_pem).unwrap() {
            roots.add(c).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(emu.mqtt_addr())
            .await
            .unwrap();
        let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(version.version));
        let mut c = Client::over(Box::new(s));
        c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    }
}
