//! Through a real HTTP CONNECT proxy (tinyproxy, from Debian) to the emulator: MQTT and WSS with
//! basic auth, and the clear error for wrong credentials (tinyproxy answers 401, others 407) — PROV_TRANSPORT_MQTT_CLIENT_07_012
//! and PROV_TRANSPORT_MQTT_WS_CLIENT_07_012.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use dps_emulator::pki::Pki;
use dps_emulator::{Config, Emulator};
use prov_mqtt_transport::ffi::*;

/// A loopback port with nothing listening on it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// tinyproxy with basic auth user/secret.
fn proxy(name: &str) -> Tinyproxy {
    tinyproxy(name, "secret", "")
}

fn device_via(emu: &Emulator, ws: bool, regid: &str, proxy_port: u16, password: &str) -> Device {
    let d = emu.pki().device(regid).unwrap();
    let (protocol, port): (
        extern "C" fn() -> *const PROV_DEVICE_TRANSPORT_PROVIDER,
        u16,
    ) = match ws {
        false => (Prov_Device_MQTT_Protocol, emu.mqtt_addr().port()),
        true => (Prov_Device_MQTT_WS_Protocol, emu.ws_addr().port()),
    };
    Device {
        protocol,
        uri: format!("localhost:{port}"),
        registration_id: regid.into(),
        auth: Auth::X509 {
            cert_chain_pem: d.cert_chain_pem.clone(),
            key_pem: d.key_pem.clone(),
        },
        trusted_ca: Some(emu.pki().root_ca_pem.clone()),
        u32_options: vec![],
        proxy: Some(ProxySetting {
            host: "127.0.0.1".into(),
            port: i32::from(proxy_port),
            credentials: Some(("user".into(), password.into())),
        }),
        trace: true,
        close_in_callback: true,
    }
}

#[test]
fn registers_through_an_authenticating_proxy_over_mqtt_and_wss() {
    let proxy = proxy("ok");
    let emu = Emulator::start(
        Config::ephemeral().with_pki(Pki::generate(&["proxied-mqtt", "proxied-ws"])),
    )
    .unwrap();
    for (ws, regid) in [(false, "proxied-mqtt"), (true, "proxied-ws")] {
        let o = register(
            &device_via(&emu, ws, regid, proxy.port, "secret"),
            Duration::from_secs(60),
        );
        assert_eq!(
            o.result,
            Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_OK),
            "{regid}: {o:?}"
        );
        assert_eq!(o.device_id.as_deref(), Some(regid));
        for line in logs_for(regid) {
            assert!(
                !line.contains("secret"),
                "the proxy password reached the log: {line}"
            );
        }
    }
}

#[test]
fn wrong_proxy_credentials_fail_at_once_with_a_clear_error() {
    let proxy = proxy("denied");
    let emu =
        Emulator::start(Config::ephemeral().with_pki(Pki::generate(&["proxy-denied"]))).unwrap();
    let o = register(
        &device_via(&emu, false, "proxy-denied", proxy.port, "wrong"),
        Duration::from_secs(60),
    );
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{o:?}"
    );
    assert!(
        o.elapsed < Duration::from_secs(10),
        "a 407 is not retried: {:?}",
        o.elapsed
    );
    assert_eq!(emu.connections_accepted(), 0, "nothing reached the service");
    let logs = logs_for("proxy-denied");
    assert!(
        logs.iter()
            .any(|l| l.contains("proxy authentication failed")),
        "{logs:#?}"
    );
}

#[test]
fn unreachable_proxy_is_retried_within_the_budget_then_a_clear_error() {
    // A port nothing listens on.
    let port = free_port();
    let emu = Emulator::start(Config::ephemeral().with_pki(Pki::generate(&["proxy-unreachable"])))
        .unwrap();
    let mut dev = device_via(&emu, false, "proxy-unreachable", port, "secret");
    dev.u32_options = vec![("retry_max_attempts", 2), ("retry_initial_ms", 50)];
    let o = register(&dev, Duration::from_secs(60));
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{o:?}"
    );
    assert_eq!(o.data_callbacks, 1);
    assert!(o.elapsed < Duration::from_secs(10), "{:?}", o.elapsed);
    assert_eq!(emu.connections_accepted(), 0, "nothing reached the service");
    let logs = logs_for("proxy-unreachable");
    let reach = format!("cannot reach the proxy 127.0.0.1:{port}");
    // Two retries (a proxy that restarts is a network fault), then one error line.
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains(&reach) && l.contains("reconnecting in"))
            .count(),
        2,
        "{logs:#?}"
    );
    let errors: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("error [proxy-unreachable]"))
        .collect();
    assert_eq!(errors.len(), 1, "{logs:#?}");
    assert!(
        errors[0].contains("giving up after 2 retries")
            && errors[0].contains(&reach)
            && errors[0].contains("refused"),
        "{}",
        errors[0]
    );
    println!(
        "PROXY | unreachable | {:.2} s | {}",
        o.elapsed.as_secs_f64(),
        errors[0]
    );
}

#[test]
fn proxy_refusing_the_connect_target_fails_at_once() {
    // tinyproxy allows CONNECT to port 443 only; the emulator listens on an ephemeral port.
    let proxy = tinyproxy("port-denied", "secret", "ConnectPort 443\n");
    let emu = Emulator::start(Config::ephemeral().with_pki(Pki::generate(&["proxy-port-denied"])))
        .unwrap();
    let o = register(
        &device_via(&emu, true, "proxy-port-denied", proxy.port, "secret"),
        Duration::from_secs(60),
    );
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT::PROV_DEVICE_TRANSPORT_RESULT_ERROR),
        "{o:?}"
    );
    assert_eq!(o.data_callbacks, 1);
    assert!(
        o.elapsed < Duration::from_secs(5),
        "not retried: {:?}",
        o.elapsed
    );
    assert_eq!(emu.connections_accepted(), 0, "nothing reached the service");
    let logs = logs_for("proxy-port-denied");
    assert!(
        !logs.iter().any(|l| l.contains("reconnecting")),
        "{logs:#?}"
    );
    let errors: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("error [proxy-port-denied]"))
        .collect();
    assert_eq!(errors.len(), 1, "{logs:#?}");
    let target = format!("CONNECT localhost:{}", emu.ws_addr().port());
    assert!(
        errors[0].contains("refused") && errors[0].contains(&target) && errors[0].contains("403"),
        "{}",
        errors[0]
    );
    println!(
        "PROXY | CONNECT target refused | {:.2} s | {}",
        o.elapsed.as_secs_f64(),
        errors[0]
    );
}
