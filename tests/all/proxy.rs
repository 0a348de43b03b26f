//! The proxy's failure matrix, through a real HTTP CONNECT proxy (tinyproxy, from Debian) to the
//! emulator: wrong credentials fail at once with a clear error and are not retried (tinyproxy
//! answers 401, others 407), an unreachable proxy is retried within the budget, a proxy refusing
//! the CONNECT target fails at once. The tunnel itself (basic auth, both tables, the CONNECT in
//! the proxy's log) is the C harness's: PROV_TRANSPORT_MQTT_CLIENT_07_012 and
//! PROV_TRANSPORT_MQTT_WS_CLIENT_07_012; secrets kept out of the trace: tests/all/secrets.rs.

use std::time::Duration;

use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;
use testkit::*;

/// tinyproxy with basic auth user/secret; None (skipped) when it is not installed.
fn proxy(name: &str, extra: &str) -> Option<Tinyproxy> {
    require_tool("tinyproxy").then(|| tinyproxy(name, "secret", extra))
}

fn device_via(emu: &Emulator, ws: bool, regid: &str, proxy_port: u16, password: &str) -> Device {
    let proto = if ws { Proto::Ws } else { Proto::Mqtt };
    Device::x509_on(emu, proto, regid).via(ProxySetting {
        host: "127.0.0.1".into(),
        port: i32::from(proxy_port),
        credentials: Some(("user".into(), password.into())),
    })
}

#[test]
fn wrong_proxy_credentials_fail_at_once_with_a_clear_error() {
    let Some(proxy) = proxy("denied", "") else {
        return;
    };
    let emu = emulator(&["proxy-denied"], |c| c);
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
    let emu = emulator(&["proxy-unreachable"], |c| c);
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
    let Some(proxy) = proxy("port-denied", "ConnectPort 443\n") else {
        return;
    };
    let emu = emulator(&["proxy-port-denied"], |c| c);
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
