//! Hostile input from the caller, through the real C tables of both transports (MQTT and WSS):
//! NULL for every pointer parameter of every slot, calls out of order (register before open,
//! dowork and get_op_status after close, close before open, double close, open again after a
//! close, dowork / close / destroy from inside callbacks), wrong option names and value types,
//! invalid PEM (which must leave the previous value in place), and 1 MB strings. This is the
//! Rust home of the argument checks on both tables (the C harness is the home of what a C
//! customer observes: one log line per refusal, ctest/REQUIREMENTS.md); where a state change
//! must be proven, the test goes on to a real registration against the emulator.

use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr;
use std::time::{Duration, Instant};

use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;
use testkit::driver::{on_challenge, on_create_json as on_create, on_data, on_parse, on_status};
use testkit::*;
use PROV_DEVICE_TRANSPORT_RESULT::*;
use PROV_DEVICE_TRANSPORT_STATUS::*;

const X509: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(1);
const SYMM: TRANSPORT_HSM_TYPE = TRANSPORT_HSM_TYPE(2);

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

// ---- NULL for every pointer parameter, both tables --------------------------------------

#[test]
fn null_for_every_pointer_parameter_of_every_slot_of_both_tables() {
    capture_logs();
    for proto in Proto::BOTH {
        let (name, t) = (proto.name(), proto.table());
        let (uri, scope, api, regid) = (c("localhost:1"), c("scope"), c("v"), c("r"));
        let n = ptr::null_mut::<c_void>();
        // SAFETY: NULL or valid C strings and handles from `create`: every bad argument must be refused before use.
        unsafe {
            // create: each string NULL
            let create = t.prov_transport_create.unwrap();
            for (u, s, a) in [
                (ptr::null(), scope.as_ptr(), api.as_ptr()),
                (uri.as_ptr(), ptr::null(), api.as_ptr()),
                (uri.as_ptr(), scope.as_ptr(), ptr::null()),
                (ptr::null(), ptr::null(), ptr::null()),
            ] {
                assert!(create(u, X509, s, a, None, n).is_null(), "{name}");
            }
            // not NULL, but no credential type, and a URL where a host name belongs
            for hsm in [
                TRANSPORT_HSM_TYPE(0),
                TRANSPORT_HSM_TYPE(3),
                TRANSPORT_HSM_TYPE(u32::MAX),
            ] {
                let h = create(uri.as_ptr(), hsm, scope.as_ptr(), api.as_ptr(), None, n);
                assert!(h.is_null(), "{name} hsm {}", hsm.0);
            }
            let url = c("mqtts://host/x");
            let h = create(url.as_ptr(), X509, scope.as_ptr(), api.as_ptr(), None, n);
            assert!(h.is_null(), "{name}: a URL is not a host name");
            // a live handle for the rest; NULL contexts and a NULL error callback are allowed
            let h = create(uri.as_ptr(), SYMM, scope.as_ptr(), api.as_ptr(), None, n);
            assert!(!h.is_null(), "{name}");
            let open = t.prov_transport_open.unwrap();
            let cases = [
                (
                    ptr::null(),
                    Some(on_data as _),
                    Some(on_status as _),
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    None,
                    Some(on_status as _),
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    Some(on_data as _),
                    None,
                    Some(on_challenge as _),
                ),
                (
                    regid.as_ptr(),
                    Some(on_data as _),
                    Some(on_status as _),
                    None,
                ),
                (ptr::null(), None, None, None),
            ];
            for (i, (id, data, status, challenge)) in cases.into_iter().enumerate() {
                let rc = open(h, id, n.cast(), n.cast(), data, n, status, n, challenge, n);
                assert_ne!(rc, 0, "{name} open case {i}");
            }
            let register = t.prov_transport_register.unwrap();
            assert_ne!(register(h, None, Some(on_create), n), 0, "{name}");
            assert_ne!(register(h, Some(on_parse), None, n), 0, "{name}");
            assert_ne!(register(h, None, None, n), 0, "{name}");
            let x509 = t.prov_transport_x509_cert.unwrap();
            assert_ne!(x509(h, ptr::null(), regid.as_ptr()), 0, "{name}");
            assert_ne!(x509(h, regid.as_ptr(), ptr::null()), 0, "{name}");
            assert_ne!(x509(h, ptr::null(), ptr::null()), 0, "{name}");
            assert_ne!((t.prov_transport_trusted_cert.unwrap())(h, ptr::null()), 0);
            let proxy = t.prov_transport_set_proxy.unwrap();
            assert_ne!(proxy(h, ptr::null()), 0, "{name}");
            for (host, user, pass) in [
                (ptr::null(), ptr::null(), ptr::null()),
                (regid.as_ptr(), regid.as_ptr(), ptr::null()),
                (regid.as_ptr(), ptr::null(), regid.as_ptr()),
                (ptr::null(), regid.as_ptr(), regid.as_ptr()),
            ] {
                let o = HTTP_PROXY_OPTIONS {
                    host_address: host,
                    port: 8080,
                    username: user,
                    password: pass,
                };
                assert_ne!(proxy(h, &o), 0, "{name}");
            }
            let opt = t.prov_transport_set_option.unwrap();
            let v: u32 = 5;
            assert_ne!(opt(h, ptr::null(), &v as *const u32 as *const c_void), 0);
            for (option, _) in prov_mqtt_transport::options::OPTIONS {
                // issue 13's options take NULL as "remove it" (the hook's is fixed by the issue)
                if prov_mqtt_transport::options::nullable(option) {
                    assert_eq!(
                        opt(h, c(option).as_ptr(), ptr::null()),
                        0,
                        "{name} {option}"
                    );
                    continue;
                }
                assert_ne!(
                    opt(h, c(option).as_ptr(), ptr::null()),
                    0,
                    "{name} {option}"
                );
            }
            assert_ne!(opt(h, ptr::null(), ptr::null()), 0);
            // NULL proxy host through proxy_data
            let o = HTTP_PROXY_OPTIONS {
                host_address: ptr::null(),
                port: 8080,
                username: ptr::null(),
                password: ptr::null(),
            };
            assert_ne!(
                opt(h, c("proxy_data").as_ptr(), &o as *const _ as *const c_void),
                0
            );
            // none of that changed anything: a correct open still works, once
            let ok = open(
                h,
                regid.as_ptr(),
                n.cast(),
                n.cast(),
                Some(on_data),
                n,
                Some(on_status),
                n,
                Some(on_challenge),
                n,
            );
            assert_eq!(ok, 0, "{name}");
            // NULL handle on every slot of this table
            (t.prov_transport_dowork.unwrap())(ptr::null_mut());
            (t.prov_transport_destroy.unwrap())(ptr::null_mut());
            assert_ne!((t.prov_transport_close.unwrap())(ptr::null_mut()), 0);
            assert_ne!(
                (t.prov_transport_get_op_status.unwrap())(ptr::null_mut()),
                0
            );
            assert_ne!(
                (t.prov_transport_set_trace.unwrap())(ptr::null_mut(), true),
                0
            );
            (t.prov_transport_destroy.unwrap())(h);
        }
    }
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
