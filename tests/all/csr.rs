//! Certificate issuance and the registration details (issue 13), end to end over both tables:
//! the `certificate_signing_request`, `api_version` and `registration_info_hook` options set
//! through the transport's `set_option` (where `Prov_Device_LL_SetOption` sends names it does
//! not know), against the emulator, which issues certificates as DPS does.

use std::time::{Duration, Instant};

use base64::Engine as _;
use dps_emulator::pki::Pki;
use dps_emulator::scenario::{ErrorReply, Scenario, Stage};
use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use testkit::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;

const TIMEOUT: Duration = Duration::from_secs(60);
const CSR_API: &str = "2025-07-01-preview";

/// A fresh P-256 key and a base64 DER PKCS#10 request for it with subject CN `cn`.
fn csr_for(cn: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(csr.der());
    (key, b64)
}

fn regid_of(name: &str, proto: Proto) -> String {
    format!("{name}-{}", proto.tag())
}

fn issuing(regid: &str, scenario: Option<Scenario>) -> Emulator {
    quiet_emulator(&[regid], |c| match scenario {
        Some(s) => c.with_scenario(regid, s),
        None => c,
    })
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What the emulator saw from `regid`: the CONNECT api-versions, and per register / poll
/// PUBLISH whether its body had `csr`.
fn wire(emu: &Emulator, regid: &str) -> (Vec<String>, Vec<Option<bool>>, Vec<Option<bool>>) {
    let t: Vec<_> = emu
        .timeline()
        .into_iter()
        .filter(|e| e.dir == "in" && e.regid.as_deref() == Some(regid))
        .collect();
    let apis = t.iter().filter_map(|e| e.api_version.clone()).collect();
    let publishes = |what: &str| {
        t.iter()
            .filter(|e| {
                e.packet == "PUBLISH" && e.topic.as_deref().is_some_and(|x| x.contains(what))
            })
            .map(|e| e.csr)
            .collect::<Vec<_>>()
    };
    (
        apis,
        publishes("iotdps-register"),
        publishes("iotdps-get-operationstatus"),
    )
}

fn csr_is_issued_and_the_device_then_connects_with_it(proto: Proto) {
    let regid = regid_of("issued", proto);
    let emu = issuing(&regid, None);
    let (key, csr) = csr_for(&regid);
    let device = Device::x509_on(&emu, proto, &regid)
        .option_str("certificate_signing_request", Some(&csr))
        .with_info_hook();
    let o = register(&device, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
    assert_eq!(o.infos.len(), 1, "one hook call: {o:?}");
    let info = &o.infos[0];
    assert_eq!((info.data_callbacks_before, info.dps_status), (0, 200));
    let pem = info
        .issued_certificate_chain
        .clone()
        .expect("an issued chain");
    let chain = certs(&pem);
    assert_eq!(chain.len(), 2, "[leaf, intermediate]");

    // the leaf is for the CSR's key
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(leaf.public_key().raw, key.public_key_der().as_slice());
    assert!(leaf
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str() == Ok(regid.as_str())));

    // and leads to the emulator's root
    let root = CertificateDer::from_pem_slice(emu.pki().root_ca_pem.as_bytes()).unwrap();
    let anchor = webpki::anchor_from_trusted_cert(&root).unwrap().to_owned();
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    webpki::EndEntityCert::try_from(&chain[0])
        .unwrap()
        .verify_for_usage(
            algs.all,
            &[anchor],
            &chain[1..],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("the issued chain verifies against the emulator's root");

    // the wire: csr in the register body only, the api-version raised for it
    let (apis, registers, polls) = wire(&emu, &regid);
    assert_eq!(apis, vec![CSR_API.to_owned()]);
    assert_eq!(registers, vec![Some(true)]);
    assert!(
        !polls.is_empty() && polls.iter().all(|c| *c == Some(false)),
        "{polls:?}"
    );

    // then an X.509 registration with the issued certificate succeeds
    let renewed = Device::on(
        &emu,
        proto,
        &regid,
        Auth::X509 {
            cert_chain_pem: pem,
            key_pem: key.serialize_pem(),
        },
    );
    let o = register(&renewed, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
}

fn a_body_that_has_csr_passes_untouched(proto: Proto) {
    let regid = regid_of("branch", proto);
    let emu = issuing(&regid, None);
    let (_, csr) = csr_for(&regid);
    // the SDK's CSR branch: its own csr in the body, its own api-version, no option
    let mut device = Device::x509_on(&emu, proto, &regid).with_info_hook();
    device.body_csr = Some(csr);
    device.api_version = CSR_API.into();
    let o = register(&device, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
    assert!(o.infos[0].issued_certificate_chain.is_some(), "{o:?}");
    let (apis, registers, polls) = wire(&emu, &regid);
    assert_eq!(
        (apis, registers),
        (vec![CSR_API.to_owned()], vec![Some(true)])
    );
    // the SDK reuses the register JSON for the poll: csr is taken out, so the poll works
    assert!(polls.iter().all(|c| *c == Some(false)), "{polls:?}");
}

fn a_csr_for_another_id_is_refused_at_open(proto: Proto) {
    let regid = regid_of("cn-other", proto);
    let emu = issuing(&regid, None);
    capture_logs();
    let (_, csr) = csr_for("someone-else");
    let ll = Ll::create(&Device::x509_on(&emu, proto, &regid));
    assert_eq!(
        ll.set_option_str("certificate_signing_request", Some(&csr)),
        0
    );
    let m = log::mark();
    assert_ne!(ll.open(), 0, "open refuses the CSR");
    let logs = log::since(m);
    assert!(
        logs.iter()
            .any(|l| l.contains("certificate_signing_request")
                && l.contains("someone-else")
                && l.contains(&regid)),
        "{logs:#?}"
    );
    // once open, a mismatching CSR is refused when set
    assert_eq!(ll.set_option_str("certificate_signing_request", None), 0);
    assert_eq!(ll.open(), 0);
    assert_ne!(
        ll.set_option_str("certificate_signing_request", Some(&csr)),
        0
    );
    assert_eq!(ll.close(), 0);
}

fn an_old_api_version_gets_400011_with_its_details(proto: Proto) {
    let regid = regid_of("old-api", proto);
    let emu = issuing(&regid, None);
    let (_, csr) = csr_for(&regid);
    let device = Device::x509_on(&emu, proto, &regid)
        .option_str("certificate_signing_request", Some(&csr))
        .option_str("api_version", Some("2021-06-01"))
        .with_info_hook();
    let o = register(&device, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    let info = &o.infos[..];
    assert_eq!(info.len(), 1, "{o:?}");
    assert_eq!((info[0].dps_status, info[0].error_code), (400, 400011));
    assert!(info[0].tracking_id.is_some() && info[0].error_message.is_some());
    assert_eq!(info[0].data_callbacks_before, 0);
    assert_eq!(wire(&emu, &regid).0, vec!["2021-06-01".to_owned()]);
}

#[test]
fn malformed_csrs_and_api_versions_are_refused_at_set_option() {
    capture_logs();
    let emu = issuing("malformed", None);
    let ll = Ll::create(&Device::x509_on(&emu, Proto::Mqtt, "malformed"));
    let m = log::mark();
    for bad in [
        "",
        "not base64!",
        "aGVsbG8=",
        "-----BEGIN CERTIFICATE REQUEST-----",
    ] {
        assert_ne!(
            ll.set_option_str("certificate_signing_request", Some(bad)),
            0,
            "{bad:?}"
        );
    }
    assert_ne!(ll.set_option_str("api_version", Some("2021-06-01&x=1")), 0);
    let lines = log::since(m);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("certificate_signing_request"))
            .count(),
        4,
        "one line each: {lines:#?}"
    );
    // a handle that refused them still registers
    assert_eq!(ll.open(), 0);
    ll.set_on_connected(Then::Later);
    ll.pump(TIMEOUT);
    assert_eq!(ll.outcome().result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK));
}

fn chain_scenario(chain: Vec<String>) -> Scenario {
    Scenario {
        issued_certificate_chain: Some(chain),
        ..Scenario::default()
    }
}

fn an_issued_chain_that_is_not_der_is_a_clear_error(proto: Proto) {
    let regid = regid_of("bad-chain", proto);
    let emu = issuing(&regid, Some(chain_scenario(vec!["bm90IGRlcg==".into()])));
    let (_, csr) = csr_for(&regid);
    let device = Device::x509_on(&emu, proto, &regid)
        .option_str("certificate_signing_request", Some(&csr))
        .with_info_hook();
    let o = register(&device, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    assert_eq!((o.infos.len(), o.infos[0].dps_status), (1, 200));
    assert_eq!(o.infos[0].issued_certificate_chain, None);
    let logs = logs_for(&regid);
    assert!(
        logs.iter()
            .any(|l| l.contains("issuedCertificateChain[0] is not a DER X.509 certificate")),
        "{logs:#?}"
    );
}

fn an_issued_chain_over_96_kb_is_a_clear_error(proto: Proto) {
    let regid = regid_of("big-chain", proto);
    // real certificates, enough of them that the PEM is over 96 KB while the reply still fits
    // the 96 KB packet limit (PEM adds a line end every 64 characters and the armour)
    let one = base64::engine::general_purpose::STANDARD.encode(
        CertificateDer::from_pem_slice(Pki::generate(&[]).intermediate_ca_pem.as_bytes()).unwrap(),
    );
    let copies = 96_500 / (one.len() + 3);
    let emu = issuing(&regid, Some(chain_scenario(vec![one; copies])));
    let device = Device::x509_on(&emu, proto, &regid).with_info_hook();
    let o = register(&device, TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    let logs = logs_for(&regid);
    assert!(
        logs.iter()
            .any(|l| l.contains("issuedCertificateChain as PEM is over") && l.contains("98304")),
        "{logs:#?}"
    );
}

fn the_hook_reports_an_assignment(proto: Proto) {
    let regid = regid_of("profile", proto);
    let scenario = Scenario {
        connection_profile: Some("mqttV5".into()),
        ..Scenario::default()
    };
    let emu = issuing(&regid, Some(scenario));
    let o = register(
        &Device::x509_on(&emu, proto, &regid).with_info_hook(),
        TIMEOUT,
    );
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
    assert_eq!(o.infos.len(), 1, "{o:?}");
    let info = &o.infos[0];
    assert_eq!(info.connection_profile.as_deref(), Some("mqttV5"));
    assert_eq!(info.substatus.as_deref(), Some("initialAssignment"));
    assert!(
        info.etag.as_deref().is_some_and(|e| !e.is_empty()),
        "{info:?}"
    );
    assert_eq!((info.dps_status, info.error_code), (200, 0));
    assert_eq!(
        (info.tracking_id.as_deref(), info.error_message.as_deref()),
        (None, None)
    );
    assert_eq!(info.issued_certificate_chain, None, "no CSR, no chain");
    assert_eq!(
        info.data_callbacks_before, 0,
        "just before the data callback"
    );
    assert_eq!(o.data_callbacks, 1);
}

fn the_hook_reports_a_401(proto: Proto) {
    let regid = regid_of("hook-401", proto);
    let scenario = Scenario {
        error: Some(ErrorReply {
            status: 401,
            error_code: 401002,
            message: "CA certificate not found".into(),
            on: Stage::Register,
            times: None,
        }),
        ..Scenario::default()
    };
    let emu = issuing(&regid, Some(scenario));
    let o = register(
        &Device::x509_on(&emu, proto, &regid).with_info_hook(),
        TIMEOUT,
    );
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    assert_eq!(o.infos.len(), 1, "{o:?}");
    let info = &o.infos[0];
    assert_eq!((info.dps_status, info.error_code), (401, 401002));
    assert!(
        info.tracking_id.as_deref().is_some_and(|t| !t.is_empty()),
        "{info:?}"
    );
    assert_eq!(
        info.error_message.as_deref(),
        Some("CA certificate not found")
    );
    assert_eq!(info.connection_profile, None);
    assert_eq!(info.data_callbacks_before, 0);
}

fn no_call_after_a_hook_destroys_the_handle(proto: Proto) {
    let regid = regid_of("hook-destroys", proto);
    let emu = issuing(&regid, None);
    let mut device = Device::x509_on(&emu, proto, &regid).with_info_hook();
    device.on_info = Then::Destroy;
    let ll = Ll::create(&device);
    assert_eq!(ll.open(), 0);
    ll.pump(TIMEOUT);
    assert!(ll.destroyed());
    std::thread::sleep(Duration::from_millis(300));
    let o = ll.outcome().clone();
    assert_eq!(
        (o.infos.len(), o.data_callbacks, o.late),
        (1, 0, 0),
        "{o:?}"
    );
}

/// A hook that closes the handle ends the registration there: no data callback follows, and the
/// handle is closed (it opens again).
fn no_data_callback_after_a_hook_closes_the_handle(proto: Proto) {
    let regid = regid_of("hook-closes", proto);
    let emu = issuing(&regid, None);
    let mut device = Device::x509_on(&emu, proto, &regid).with_info_hook();
    device.on_info = Then::Close;
    let ll = Ll::create(&device);
    assert_eq!(ll.open(), 0);
    let started = Instant::now();
    while ll.outcome().infos.is_empty() && started.elapsed() < TIMEOUT {
        ll.step(Instant::now());
        std::thread::sleep(Duration::from_millis(2));
    }
    ll.dowork_for(Duration::from_millis(300));
    let o = ll.outcome().clone();
    assert_eq!(
        (o.infos.len(), o.data_callbacks, o.late),
        (1, 0, 0),
        "{o:?}"
    );
    // closed by the hook: the handle opens again (an open handle refuses `open`)
    assert_eq!(ll.open(), 0);
}

fn a_null_hook_stops_the_calls(proto: Proto) {
    let regid = regid_of("hook-null", proto);
    let emu = issuing(&regid, None);
    let ll = Ll::create(&Device::x509_on(&emu, proto, &regid).with_info_hook());
    assert_eq!(ll.set_info_hook(false), 0);
    assert_eq!(ll.open(), 0);
    ll.pump(TIMEOUT);
    let o = ll.outcome().clone();
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK), "{o:?}");
    assert!(o.infos.is_empty(), "{o:?}");
    // and set again on the same handle, it is called for the next registration
    assert_eq!(ll.close(), 0);
    ll.forget_results();
    assert_eq!(ll.set_info_hook(true), 0);
    assert_eq!(ll.open(), 0);
    ll.pump(TIMEOUT);
    assert_eq!(ll.outcome().infos.len(), 1);
}

both!(
    csr_is_issued_and_the_device_then_connects_with_it,
    a_body_that_has_csr_passes_untouched,
    a_csr_for_another_id_is_refused_at_open,
    an_old_api_version_gets_400011_with_its_details,
    an_issued_chain_that_is_not_der_is_a_clear_error,
    an_issued_chain_over_96_kb_is_a_clear_error,
    the_hook_reports_an_assignment,
    the_hook_reports_a_401,
    no_call_after_a_hook_destroys_the_handle,
    no_data_callback_after_a_hook_closes_the_handle,
    a_null_hook_stops_the_calls,
);
