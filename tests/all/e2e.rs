//! End to end: the C ABI driven as the SDK's LL client drives it, against the local DPS
//! emulator over MQTT/TLS and MQTT/WSS, with real TLS and real certificates.

use std::time::Duration;

use dps_emulator::scenario::{ErrorReply, Scenario, Stage};
use dps_emulator::{Config, Emulator};
use prov_mqtt_transport::ffi::*;
use testkit::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const INDIVIDUAL_KEY: &str = "c2VjcmV0LWluZGl2aWR1YWwta2V5LWZvci10ZXN0cw==";
const GROUP_KEY: &str = "Z3JvdXAta2V5LWZvci10aGUtZW11bGF0b3ItdGVzdHM=";
const TIMEOUT: Duration = Duration::from_secs(60);

fn emulator(devices: &[&str], configure: impl FnOnce(Config) -> Config) -> Emulator {
    testkit::emulator(devices, |cfg| {
        configure(
            cfg.with_symmetric_key("sym-mqtt", INDIVIDUAL_KEY)
                .with_symmetric_key("sym-ws", INDIVIDUAL_KEY)
                .with_group_key(GROUP_KEY),
        )
    })
}

fn assert_assigned(o: &Outcome, regid: &str) {
    assert_eq!(
        o.result,
        Some(PROV_DEVICE_TRANSPORT_RESULT_OK),
        "{regid}: {o:?}"
    );
    assert_eq!(o.hub.as_deref(), Some("emulated-hub.azure-devices.net"));
    assert_eq!(o.device_id.as_deref(), Some(regid));
    assert_eq!(o.data_callbacks, 1, "one data callback");
    assert_eq!(
        o.statuses.first(),
        Some(&(PROV_DEVICE_TRANSPORT_STATUS_CONNECTED, 1))
    );
    assert!(
        o.statuses
            .contains(&(PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING, 1)),
        "{o:?}"
    );
    assert!(o.errors.is_empty());
}

fn x509_registers(proto: Proto) {
    let regid = format!("x509-{proto:?}").to_lowercase();
    let emu = emulator(&[&regid], |c| c);
    let o = register(
        &Device::on(&emu, proto, &regid, x509(emu.pki(), &regid)),
        TIMEOUT,
    );
    assert_assigned(&o, &regid);
}

both!(x509_registers);

fn symmetric_registers(proto: Proto, regid: &str, key: String) {
    let emu = emulator(&[], |c| c);
    let o = register(
        &Device::on(&emu, proto, regid, Auth::SymmetricKey { key_b64: key }),
        TIMEOUT,
    );
    assert_assigned(&o, regid);
    for line in logs_for(regid) {
        assert!(
            !line.contains("SharedAccessSignature"),
            "a SAS token reached the log: {line}"
        );
    }
}

#[test]
fn mqtt_symmetric_individual_registers() {
    symmetric_registers(Proto::Mqtt, "sym-mqtt", INDIVIDUAL_KEY.into());
}

#[test]
fn ws_symmetric_individual_registers() {
    symmetric_registers(Proto::Ws, "sym-ws", INDIVIDUAL_KEY.into());
}

#[test]
fn mqtt_symmetric_group_registers() {
    let key = dps_emulator::sas::derive_device_key(GROUP_KEY, "group-mqtt");
    symmetric_registers(Proto::Mqtt, "group-mqtt", key);
}

#[test]
fn ws_symmetric_group_registers() {
    let key = dps_emulator::sas::derive_device_key(GROUP_KEY, "group-ws");
    symmetric_registers(Proto::Ws, "group-ws", key);
}

#[test]
fn throttled_429_then_registers() {
    let regid = "throttled";
    let emu = emulator(&[regid], |c| {
        c.with_scenario(
            regid,
            Scenario {
                throttle_429: 2,
                ..Scenario::default()
            },
        )
    });
    let o = register(
        &Device::on(&emu, Proto::Mqtt, regid, x509(emu.pki(), regid)),
        TIMEOUT,
    );
    assert_assigned(&o, regid);
    let transient = o
        .statuses
        .iter()
        .filter(|(s, _)| *s == PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT)
        .count();
    assert_eq!(transient, 2, "{o:?}");
}

#[test]
fn unauthorized_401_takes_the_error_path_and_logs_the_error_code() {
    let regid = "denied-401";
    let error = ErrorReply {
        status: 401,
        error_code: 401002,
        message: "CA certificate not found".into(),
        on: Stage::Register,
        times: None,
    };
    let emu = emulator(&[regid], |c| {
        c.with_scenario(
            regid,
            Scenario {
                error: Some(error),
                ..Scenario::default()
            },
        )
    });
    let o = register(
        &Device::on(&emu, Proto::Ws, regid, x509(emu.pki(), regid)),
        TIMEOUT,
    );
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR), "{o:?}");
    assert_eq!((o.hub.as_deref(), o.data_callbacks), (None, 1));
    let logs = logs_for(regid);
    assert!(
        logs.iter().any(|l| l.contains("401")
            && l.contains("errorCode 401002")
            && l.contains("trackingId")),
        "{logs:#?}"
    );
}

#[test]
fn connack_refused_reports_key_unauthorized() {
    let regid = "refused";
    let emu = emulator(&[regid], |c| {
        c.with_scenario(
            regid,
            Scenario {
                connack_refuse: Some(5),
                ..Scenario::default()
            },
        )
    });
    let o = register(
        &Device::on(&emu, Proto::Mqtt, regid, x509(emu.pki(), regid)),
        TIMEOUT,
    );
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR));
    assert_eq!(
        o.errors,
        vec![PROV_DEVICE_TRANSPORT_ERROR::PROV_DEVICE_ERROR_KEY_UNAUTHORIZED]
    );
    assert!(o.statuses.is_empty(), "never connected: {o:?}");
    assert_eq!(
        emu.connections_accepted(),
        1,
        "an authorization failure is not retried"
    );
}

#[test]
fn wrong_symmetric_key_is_refused_not_retried() {
    let emu = emulator(&[], |c| c);
    let bad = Auth::SymmetricKey {
        key_b64: GROUP_KEY.into(),
    };
    let o = register(&Device::on(&emu, Proto::Ws, "sym-ws", bad), TIMEOUT);
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR));
    assert_eq!(
        o.errors,
        vec![PROV_DEVICE_TRANSPORT_ERROR::PROV_DEVICE_ERROR_KEY_UNAUTHORIZED]
    );
}

#[test]
fn failed_and_disabled_final_states_take_the_error_path() {
    use dps_emulator::scenario::Final;
    for (regid, fin) in [
        (
            "final-failed",
            Final::Failed {
                error_code: 400209,
                message: "not allowed".into(),
            },
        ),
        ("final-disabled", Final::Disabled),
    ] {
        let emu = emulator(&[regid], |c| {
            c.with_scenario(
                regid,
                Scenario {
                    final_status: fin,
                    ..Scenario::default()
                },
            )
        });
        let o = register(
            &Device::on(&emu, Proto::Mqtt, regid, x509(emu.pki(), regid)),
            TIMEOUT,
        );
        assert_eq!(
            o.result,
            Some(PROV_DEVICE_TRANSPORT_RESULT_ERROR),
            "{regid}: {o:?}"
        );
        assert_eq!(o.data_callbacks, 1);
    }
    assert!(logs_for("final-failed")
        .iter()
        .any(|l| l.contains("errorCode 400209")));
}

#[test]
fn reordered_query_parameters_are_understood() {
    let regid = "reordered";
    let emu = emulator(&[regid], |c| {
        c.with_scenario(
            regid,
            Scenario {
                reordered_query: true,
                retry_after: Some(2),
                ..Scenario::default()
            },
        )
    });
    let o = register(
        &Device::on(&emu, Proto::Mqtt, regid, x509(emu.pki(), regid)),
        TIMEOUT,
    );
    assert_eq!(o.result, Some(PROV_DEVICE_TRANSPORT_RESULT_OK));
    assert!(
        o.statuses
            .contains(&(PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING, 2)),
        "{o:?}"
    );
}

#[test]
fn a_connection_dropped_after_register_is_survived() {
    use dps_emulator::scenario::DropAfter;
    for proto in [Proto::Mqtt, Proto::Ws] {
        let regid = format!("drop-register-{proto:?}").to_lowercase();
        let drop = DropAfter {
            stage: Stage::Register,
            always: false,
        };
        let emu = emulator(&[&regid], |c| {
            c.with_scenario(
                &regid,
                Scenario {
                    drop_after: Some(drop),
                    ..Scenario::default()
                },
            )
        });
        let mut dev = Device::on(&emu, proto, &regid, x509(emu.pki(), &regid));
        dev.u32_options = vec![("retry_initial_ms", 50)];
        let o = register(&dev, TIMEOUT);
        assert_assigned(&o, &regid);
        assert_eq!(emu.connections_accepted(), 2, "one reconnect");
    }
}

#[test]
fn destroy_without_close_and_mid_connect_is_clean() {
    let regid = "destroy-mid";
    let emu = emulator(&[regid], |c| {
        c.with_scenario(
            regid,
            Scenario {
                delay_ms: 300,
                ..Scenario::default()
            },
        )
    });
    let dev = Device::on(&emu, Proto::Mqtt, regid, x509(emu.pki(), regid));
    // close_in_callback off, and a timeout shorter than the handshake: destroy mid-connect.
    let o = register(&dev.keep_open(), Duration::from_millis(100));
    assert_eq!(o.result, None);
    assert_eq!(o.data_callbacks, 0, "no callback after destroy");
}
