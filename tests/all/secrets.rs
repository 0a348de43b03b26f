//! Secrets never reach the log or the packet trace: SAS tokens (and their signatures), symmetric
//! keys (individual, group, derived), the device's private key and the proxy password (and its
//! basic-auth encoding). Every registration here runs with `set_trace(true)`; the checks read
//! every line the library printed and first prove that the trace is there (CONNECT, CONNACK,
//! PUBLISH lines), so that they can fail.

use std::time::Duration;

use dps_emulator::pki::Pki;
use dps_emulator::scenario::{DropAfter, Scenario, Stage};
use dps_emulator::{sas, Config, Emulator};
use prov_mqtt_transport::ffi::*;
use testkit::*;

const INDIVIDUAL_KEY: &str = "c2VjcmV0LWluZGl2aWR1YWwta2V5LWZvci1zZWNyZXRzLXRlc3Q=";
const GROUP_KEY: &str = "Z3JvdXAta2V5LWZvci10aGUtc2VjcmV0cy10ZXN0LTAxMjM0NQ==";
const PROXY_PASSWORD: &str = "pr0xy-Pa55w0rd-7f3a9c";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Every line the library printed that names this registration id, or has no id at all.
fn lines(regid: &str) -> Vec<String> {
    let tag = format!("[{regid}]");
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&tag) || !l.contains(" ["))
        .cloned()
        .collect()
}

/// The trace is on and complete enough that a leak would show.
fn assert_traced(lines: &[String], regid: &str) {
    for packet in ["-> CONNECT", "<- CONNACK", "-> SUBSCRIBE", "-> PUBLISH"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("trace [{regid}]: {packet}"))),
            "no {packet:?} trace line for {regid}: {lines:#?}"
        );
    }
}

fn assert_absent(lines: &[String], what: &str, secret: &str) {
    assert!(secret.len() >= 4, "a secret worth looking for: {secret:?}");
    for l in lines {
        assert!(!l.contains(secret), "{what} in a log line: {l}");
    }
}

/// The SAS tokens the test driver may have minted during `window` (expiry = now + 3600): each
/// whole token and its signature, raw and url-decoded.
fn sas_material(regid: &str, key: &str, window: (u64, u64)) -> Vec<String> {
    let mut out = Vec::new();
    for now in window.0 - 1..=window.1 + 1 {
        let token = sas::token(SCOPE, regid, key, now + 3600);
        let sig = token
            .split(['&', ' '])
            .find_map(|p| p.strip_prefix("sig="))
            .unwrap()
            .to_owned();
        let decoded = sig
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        out.extend([token, sig, decoded]);
    }
    out
}

fn symmetric(ws: bool, regid: &str, key: String, group: bool) {
    let mut cfg = Config::ephemeral();
    cfg.log_to_stderr = false;
    let cfg = match group {
        true => cfg.with_group_key(GROUP_KEY),
        false => cfg.with_symmetric_key(regid, INDIVIDUAL_KEY),
    };
    // One drop after CONNECT: the token is asked for and sent twice.
    let cfg = cfg.with_scenario(
        regid,
        Scenario {
            drop_after: Some(DropAfter {
                stage: Stage::Connect,
                always: false,
            }),
            ..Scenario::default()
        },
    );
    let emu = Emulator::start(cfg).unwrap();
    let proto = if ws { Proto::Ws } else { Proto::Mqtt };
    let auth = Auth::SymmetricKey {
        key_b64: key.clone(),
    };
    let start = sas::now_unix();
    let o = register(
        &Device::on(&emu, proto, regid, auth).options(&[("retry_initial_ms", 50)]),
        TIMEOUT,
    );
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK),
        "{o:?}"
    );
    assert_eq!(emu.connections_accepted(), 2, "the token was sent twice");
    let window = (start, sas::now_unix());
    let lines = lines(regid);
    assert_traced(&lines, regid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("-> CONNECT") && l.contains("password=<redacted")),
        "the CONNECT trace shows the password redacted: {lines:#?}"
    );
    for secret in sas_material(regid, &key, window) {
        assert_absent(&lines, "SAS token material", &secret);
    }
    assert_absent(&lines, "the device key", &key);
    assert_absent(&lines, "the group key", GROUP_KEY);
    assert_absent(&lines, "the individual key", INDIVIDUAL_KEY);
    for marker in ["SharedAccessSignature", "sig=", "skn="] {
        assert_absent(&lines, "a SAS token field", marker);
    }
}

#[test]
fn mqtt_individual_key_and_sas_token_stay_out_of_the_trace() {
    symmetric(false, "secret-sym-mqtt", INDIVIDUAL_KEY.into(), false);
}

#[test]
fn ws_group_derived_key_and_sas_token_stay_out_of_the_trace() {
    let regid = "secret-group-ws";
    symmetric(true, regid, sas::derive_device_key(GROUP_KEY, regid), true);
}

/// A refused SAS token (wrong key): the error line explains without quoting the token.
#[test]
fn a_refused_sas_token_is_not_quoted_in_the_error() {
    let regid = "secret-refused";
    let mut cfg = Config::ephemeral().with_symmetric_key(regid, INDIVIDUAL_KEY);
    cfg.log_to_stderr = false;
    let emu = Emulator::start(cfg).unwrap();
    let wrong = GROUP_KEY.to_owned();
    let start = sas::now_unix();
    let auth = Auth::SymmetricKey {
        key_b64: wrong.clone(),
    };
    let o = register(&Device::on(&emu, Proto::Mqtt, regid, auth), TIMEOUT);
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR)
    );
    let lines = lines(regid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error [") && l.contains("CONNACK refused")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("-> CONNECT")), "{lines:#?}");
    for secret in sas_material(regid, &wrong, (start, sas::now_unix())) {
        assert_absent(&lines, "SAS token material", &secret);
    }
    assert_absent(&lines, "the key", &wrong);
    assert_absent(&lines, "a SAS token", "SharedAccessSignature");
}

// ---- X.509 through an authenticating proxy: the private key and the proxy password ------

/// base64 of `user:password`, as it travels in Proxy-Authorization.
fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// None (skipped) without tinyproxy.
fn x509_via_proxy(ws: bool, regid: &str, password: &str) -> Option<Outcome> {
    if !require_tool("tinyproxy") {
        return None;
    }
    let proxy = tinyproxy("secrets", PROXY_PASSWORD, "");
    let mut cfg = Config::ephemeral().with_pki(Pki::generate(&[regid]));
    cfg.log_to_stderr = false;
    let emu = Emulator::start(cfg).unwrap();
    let d = emu.pki().device(regid).unwrap().clone();
    let proto = if ws { Proto::Ws } else { Proto::Mqtt };
    let o = register(
        &Device::x509_on(&emu, proto, regid)
            .options(&[("retry_max_attempts", 0)])
            .via(ProxySetting {
                host: "127.0.0.1".into(),
                port: i32::from(proxy.port),
                credentials: Some(("user".into(), password.into())),
            }),
        TIMEOUT,
    );
    let lines = lines(regid);
    assert!(
        lines.iter().any(|l| l.contains("-> CONNECT")),
        "traced: {lines:#?}"
    );
    assert_absent(&lines, "the proxy password", password);
    assert_absent(
        &lines,
        "the proxy credentials (basic auth)",
        &basic_auth("user", password),
    );
    // Every 16-character piece of the private key's base64 body.
    let body: String = d
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for piece in body.as_bytes().chunks(16).filter(|c| c.len() == 16) {
        assert_absent(
            &lines,
            "private key material",
            std::str::from_utf8(piece).unwrap(),
        );
    }
    assert_absent(&lines, "a private key", "PRIVATE KEY");
    Some(o)
}

fn private_key_and_proxy_password_stay_out_of_the_trace(proto: Proto) {
    let regid = match proto {
        Proto::Mqtt => "secret-x509-mqtt",
        Proto::Ws => "secret-x509-ws",
    };
    let Some(o) = x509_via_proxy(proto == Proto::Ws, regid, PROXY_PASSWORD) else {
        return;
    };
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK),
        "{o:?}"
    );
    assert_traced(&lines(regid), regid);
}

both!(private_key_and_proxy_password_stay_out_of_the_trace);

/// A wrong proxy password is refused; the error line does not quote it.
#[test]
fn a_refused_proxy_password_is_not_quoted_in_the_error() {
    let regid = "secret-proxy-refused";
    let Some(o) = x509_via_proxy(false, regid, "wr0ng-Pa55w0rd-c3b1e2") else {
        return;
    };
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR)
    );
    let lines = lines(regid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error [") && l.contains("proxy authentication failed")),
        "{lines:#?}"
    );
}

#[test]
fn basic_auth_encoding_is_right() {
    // RFC 7617's example, so the absence checks above look for the right string.
    assert_eq!(
        basic_auth("Aladdin", "open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}
