//! Hostile input from the caller, through the real C tables of both transports (MQTT and WSS):
//! calls out of order (register before open, dowork and get_op_status after close, close before
//! open, double close, open again after a close, dowork / close / destroy from inside
//! callbacks), wrong option names and value types, invalid PEM (which must leave the previous
//! value in place), and 1 MB strings; where a state change must be proven, the test goes on to a
//! real registration against the emulator. NULL arguments are not here: the C harness is their
//! one home (every pointer parameter of every slot of both tables, with the one log line a C
//! customer sees; ctest/REQUIREMENTS.md, "Where each behaviour is tested").

use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr;
use std::time::{Duration, Instant};

use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;
use testkit::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const X509: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(1);

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn uri(emu: &Emulator, proto: Proto) -> String {
    format!("localhost:{}", proto.port(emu))
}

/// A handle with the trusted CA, the device's certificate and a budget of one reconnect; it
/// registers from inside the CONNECTED callback and leaves the handle open in the data callback.
fn x509_handle(emu: &Emulator, proto: Proto, regid: &str) -> Ll {
    let mut d = Device::x509_on(emu, proto, regid)
        .trace(false)
        .options(&[("retry_max_attempts", 1)]);
    d.on_connected = Then::Register;
    d.on_data = Then::Nothing;
    Ll::create(&d)
}

const LIMIT: Duration = Duration::from_secs(20);

/// The loop until the data callback, which must be the only one and OK.
fn pump_until_assigned(r: &Ll, name: &str) {
    r.pump(LIMIT);
    assert_eq!(
        r.outcome().results,
        vec![PROV_DEVICE_TRANSPORT_RESULT_OK],
        "{name}"
    );
}

// ---- calls out of order ----------------------------------------------------------------

#[test]
fn calls_out_of_order_are_refused_or_harmless() {
    capture_logs();
    let emu = quiet_emulator(&["order-mqtt", "order-wss"], |c| c);
    for proto in Proto::BOTH {
        let name = proto.name();
        let regid = format!("order-{}", name.to_lowercase());
        let r = x509_handle(&emu, proto, &regid);
        // before open: close and dowork are harmless, polling is refused
        assert_eq!(r.close(), 0, "{name} close before open");
        r.dowork();
        assert_ne!(r.poll(), 0);
        // register before open is accepted (the SDK allows it) and goes out after open
        assert_eq!(r.register(), 0);
        assert_ne!(
            r.register(),
            0,
            "{name}: a registration is already in progress"
        );
        r.dowork_for(Duration::from_millis(200));
        assert!(
            r.outcome().statuses.is_empty(),
            "nothing happens before open"
        );
        assert!(r.outcome().results.is_empty());
        r.set_on_connected(Then::Nothing); // already registered
        assert_eq!(r.open(), 0);
        pump_until_assigned(&r, name);
        assert_eq!(
            r.outcome().hub.as_deref(),
            Some("emulated-hub.azure-devices.net")
        );
        // after the outcome: register refused while the operation is remembered (poll it or
        // close), polling is allowed
        assert_ne!(r.register(), 0, "{name}: an operation id was received");
        // close, then dowork, double close, poll after close
        assert_eq!(r.close(), 0);
        let before = (r.outcome().statuses.len(), r.outcome().results.len());
        r.dowork_for(Duration::from_millis(200));
        assert_eq!(r.close(), 0, "double close");
        assert_ne!(r.poll(), 0, "{name}");
        r.dowork_for(Duration::from_millis(100));
        assert_eq!(
            (r.outcome().statuses.len(), r.outcome().results.len()),
            before,
            "{name}: no callback after close"
        );
        // open again on the same handle: a second registration works (the operation id
        // was forgotten by close)
        r.forget_results();
        r.set_on_connected(Then::Register);
        assert_eq!(r.open(), 0);
        assert_ne!(r.open(), 0, "{name}: open twice");
        pump_until_assigned(&r, name);
        r.destroy();
    }
}

#[test]
fn destroy_close_and_dowork_from_inside_callbacks() {
    capture_logs();
    let emu = quiet_emulator(
        &[
            "cb-destroy-mqtt",
            "cb-destroy-wss",
            "cb-close-mqtt",
            "cb-close-wss",
            "cb-dowork-mqtt",
            "cb-dowork-wss",
            "cb-data-destroy-mqtt",
            "cb-data-destroy-wss",
        ],
        |c| c,
    );
    for proto in Proto::BOTH {
        let name = proto.name();
        let lower = name.to_lowercase();
        // destroy inside the CONNECTED status callback: nothing afterwards, no crash
        let regid = format!("cb-destroy-{lower}");
        let r = x509_handle(&emu, proto, &regid);
        r.set_on_connected(Then::Destroy);
        assert_eq!(r.open(), 0);
        r.pump(LIMIT);
        assert!(r.destroyed(), "{name}: CONNECTED arrived");
        assert_eq!(r.outcome().late, 0);
        assert!(r.outcome().results.is_empty());

        // close inside CONNECTED: no further callback; the handle can be opened again
        let regid = format!("cb-close-{lower}");
        let r = x509_handle(&emu, proto, &regid);
        r.set_on_connected(Then::Close);
        assert_eq!(r.open(), 0);
        r.dowork_for(Duration::from_secs(2));
        assert_eq!(
            r.outcome().statuses,
            vec![(PROV_DEVICE_TRANSPORT_STATUS_CONNECTED, 1)],
            "{name}"
        );
        assert!(
            r.outcome().results.is_empty(),
            "{name}: no callback after close"
        );
        r.set_on_connected(Then::Register);
        assert_eq!(r.open(), 0);
        pump_until_assigned(&r, name);
        r.destroy();

        // dowork re-entered from inside CONNECTED: no deadlock, the registration still
        // completes with one data callback
        let regid = format!("cb-dowork-{lower}");
        let r = x509_handle(&emu, proto, &regid);
        r.set_on_connected(Then::DoWork);
        assert_eq!(r.open(), 0);
        // the re-entrant dowork has nothing left to do; register as the LL client would
        r.dowork_for(Duration::from_millis(500));
        assert_eq!(r.outcome().reentered, 1, "{name}");
        assert_eq!(r.register(), 0);
        pump_until_assigned(&r, name);
        r.destroy();

        // destroy inside the data callback (instead of close)
        let regid = format!("cb-data-destroy-{lower}");
        let r = x509_handle(&emu, proto, &regid);
        r.set_on_data(Then::Destroy);
        assert_eq!(r.open(), 0);
        pump_until_assigned(&r, name);
        assert!(r.destroyed());
        assert_eq!(r.outcome().late, 0);
    }
}

// ---- options, PEM, long strings ----------------------------------------------------------

#[test]
fn wrong_option_names_and_values_are_refused_and_change_nothing() {
    capture_logs();
    for proto in Proto::BOTH {
        let (name, t) = (proto.name(), proto.table());
        let (uri, scope, api) = (c("localhost:1"), c("scope"), c("v"));
        // SAFETY: valid C strings; the handle from `create` is live until its destroy; option values point to locals of the right type.
        unsafe {
            let h = (t.prov_transport_create.unwrap())(
                uri.as_ptr(),
                X509,
                scope.as_ptr(),
                api.as_ptr(),
                None,
                ptr::null_mut(),
            );
            let opt = |n: &[u8], v: *const c_void| {
                let n = CString::new(n).unwrap();
                (t.prov_transport_set_option.unwrap())(h, n.as_ptr(), v)
            };
            let u: u32 = 10;
            let pu = &u as *const u32 as *const c_void;
            // unknown names, wrong case, empty, not UTF-8, OpenSSL-only, 1 MB
            let long = vec![b'k'; 1 << 20];
            for bad in [
                &b"KeepAlive"[..],
                b"keepalive ",
                b"",
                b"\xff\xfe",
                b"Engine",
                b"CipherSuite",
                b"x509certificate",
                &long,
            ] {
                assert_ne!(
                    opt(bad, pu),
                    0,
                    "{name} {:?}",
                    String::from_utf8_lossy(&bad[..bad.len().min(20)])
                );
            }
            // numeric values out of range, as the other integer type
            for (option, value) in [
                ("reply_timeout_secs", 0u32),
                ("reply_timeout_secs", u32::MAX),
                ("retry_max_attempts", 101),
                ("retry_max_secs", 0),
                ("retry_initial_ms", 0),
                ("retry_initial_ms", 60_001),
                ("keepalive", u32::MAX), // -1 as an int
                ("keepalive", 65_536),
                ("tls_version", 10),
                ("tls_version", 11),
                ("tls_version", 14),
                ("tls_version", 0x1_0000 + 12),
            ] {
                assert_ne!(
                    opt(option.as_bytes(), &value as *const u32 as *const c_void),
                    0,
                    "{name} {option}={value}"
                );
            }
            // TrustedCerts: not PEM, not UTF-8, a key instead of a certificate, empty
            for pem in [
                &b"not a certificate"[..],
                b"\xff\xfe",
                b"",
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                b"-----BEGIN CERTIFICATE-----\nMIIB\n",
                b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
            ] {
                let v = CString::new(pem).unwrap();
                assert_ne!(opt(b"TrustedCerts", v.as_ptr().cast()), 0, "{name}");
                assert_ne!((t.prov_transport_trusted_cert.unwrap())(h, v.as_ptr()), 0);
            }
            // proxy with a bad port through proxy_data and set_proxy
            let host = c("proxy.local");
            for port in [0, -1, 65_536, i32::MIN] {
                let o = HTTP_PROXY_OPTIONS {
                    host_address: host.as_ptr(),
                    port,
                    username: ptr::null(),
                    password: ptr::null(),
                };
                assert_ne!(opt(b"proxy_data", &o as *const _ as *const c_void), 0);
                assert_ne!((t.prov_transport_set_proxy.unwrap())(h, &o), 0);
            }
            // any non-zero byte is true for a bool option
            let b: u8 = 2;
            assert_eq!(opt(b"logtrace", &b as *const u8 as *const c_void), 0);
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
}

#[test]
fn invalid_pem_is_refused_and_keeps_the_previous_value() {
    capture_logs();
    let emu = quiet_emulator(&["pem-mqtt", "pem-wss", "pem-other"], |c| c);
    let other = emu.pki().device("pem-other").unwrap().clone();
    for proto in Proto::BOTH {
        let (name, t) = (proto.name(), proto.table());
        let regid = format!("pem-{}", name.to_lowercase());
        let r = x509_handle(&emu, proto, &regid); // valid CA and certificate set
        let h = r.handle();
        let d = emu.pki().device(&regid).unwrap().clone();
        let cert_only = d
            .cert_chain_pem
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap()
            .to_owned()
            + "-----END CERTIFICATE-----\n";
        let truncated_key = d.key_pem[..d.key_pem.len() / 2].to_owned();
        let bad: Vec<(&str, String, String)> = vec![
            (
                "key of another device",
                d.cert_chain_pem.clone(),
                other.key_pem.clone(),
            ),
            (
                "certificate as key",
                d.cert_chain_pem.clone(),
                d.cert_chain_pem.clone(),
            ),
            ("key as certificate", d.key_pem.clone(), d.key_pem.clone()),
            ("truncated key", d.cert_chain_pem.clone(), truncated_key),
            (
                "leaf only, key of another",
                cert_only,
                other.key_pem.clone(),
            ),
            ("empty", String::new(), String::new()),
            ("garbage", "x".repeat(1 << 20), "y".repeat(1 << 20)),
        ];
        // SAFETY: valid C strings and the handle from `create`, live until its destroy.
        unsafe {
            for (what, cert, key) in bad {
                assert_ne!(
                    (t.prov_transport_x509_cert.unwrap())(h, c(&cert).as_ptr(), c(&key).as_ptr()),
                    0,
                    "{name}: {what}"
                );
            }
            for pem in ["junk", &"A".repeat(1 << 20)] {
                assert_ne!(
                    (t.prov_transport_trusted_cert.unwrap())(h, c(pem).as_ptr()),
                    0
                );
            }
        }
        // the valid certificate, key and CA set before are still in force
        assert_eq!(r.open(), 0);
        pump_until_assigned(&r, name);
        r.destroy();
    }
}

#[test]
fn one_megabyte_strings_are_refused_or_end_in_a_clean_error() {
    capture_logs();
    let mb = "a".repeat(1 << 20);
    let emu = quiet_emulator(&["long-strings"], |c| c);
    let creds = x509(emu.pki(), "long-strings");
    for proto in Proto::BOTH {
        let name = proto.name();
        // 1 MB scope, api version, registration id: refused at open with one short log
        // line (their CONNECT could not be encoded); 128 bytes is the longest accepted
        for which in ["scope", "api_version", "registration_id"] {
            let mut d =
                Device::new(proto, uri(&emu, proto), "long-strings", creds.clone()).trace(false);
            d.on_connected = Then::Register;
            match which {
                "scope" => d.scope = mb.clone(),
                "api_version" => d.api_version = mb.clone(),
                _ => d.registration_id = mb.clone(),
            }
            let r = Ll::try_create(&d).unwrap_or_else(|| panic!("{name} {which}"));
            let logged_before = testkit::log::mark();
            assert_ne!(r.open(), 0, "{name} {which} refused at open");
            // this test's lines (other tests log concurrently in this process)
            let lines: Vec<String> = testkit::log::since(logged_before)
                .into_iter()
                .filter(|l| !l.contains(" [") || l.contains("[long-strings]") || l.contains("[aaa"))
                .collect();
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(which) && l.contains("at most 128")),
                "{name} {which}: {lines:?}"
            );
            assert!(lines.iter().all(|l| l.len() < 1000), "no megabyte log line");
            r.dowork_for(Duration::from_millis(100));
            assert!(r.outcome().statuses.is_empty() && r.outcome().results.is_empty());
            if which == "registration_id" {
                // the longest DPS allows still opens
                assert_eq!(r.open_as(&"a".repeat(128)), 0, "{name}");
            }
            r.destroy();
        }
        // a 1 MB uri is a host name no resolver accepts: refused at create, or the
        // registration ends in one clean error within the budget
        let mut d = Device::new(proto, mb.clone(), "long-strings", creds.clone())
            .trace(false)
            .options(&[("retry_max_attempts", 1), ("retry_initial_ms", 50)]);
        d.on_connected = Then::Register;
        let Some(r) = Ll::try_create(&d) else {
            continue;
        };
        assert_eq!(r.open(), 0);
        let started = Instant::now();
        r.pump(LIMIT);
        assert_eq!(
            r.outcome().results,
            vec![PROV_DEVICE_TRANSPORT_RESULT_ERROR],
            "{name} uri"
        );
        assert!(started.elapsed() < LIMIT);
        r.destroy();
    }
}
