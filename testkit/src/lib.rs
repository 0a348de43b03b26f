//! The test kit: ONE Rust stand-in for the SDK's provisioning LL client
//! (`prov_device_ll_client.c`) and the pieces every suite shares.
//!
//! - [`driver`]: the LL-client stand-in. It drives a provider table through its C function
//!   pointers as the LL client does (create, options, open, a `dowork` loop, register on
//!   CONNECTED, poll after ASSIGNING with the retry interval, register or poll again after
//!   TRANSIENT, close inside the data callback, destroy), with callbacks that allocate with
//!   `malloc` as the SDK's do (the `PROV_JSON_INFO` contract: the record and its members are
//!   malloc'd, the transport frees them). Step by step ([`Ll`]) or in one call ([`register`]).
//! - [`device`]: the protocol enum, device settings and their builders.
//! - [`log`]: capture of the library's log lines, which can be switched off (leak cycles).
//! - [`tools`]: the one "skipped: <tool> not installed" helper (a failure under
//!   `PROV_TEST_REQUIRE_ALL=1`), and the root check.
//! - [`process`]: this process's resident memory, descriptors and threads.
//! - [`proxy`]: a real tinyproxy on a free loopback port.
//! - [`tls`]: the server configuration of the tests' scripted servers.
//! - [`emulator`]: the DPS emulator, in this process or as its own process.
//! - [`both!`]: one test function, run as an MQTT/TLS test and as an MQTT/WSS test.

pub mod device;
pub mod driver;
pub mod emulator;
pub mod log;
pub mod process;
pub mod proxy;
pub mod tls;
pub mod tools;

pub use device::{x509, Auth, Device, Proto, ProxySetting, API_VERSION, SCOPE};
pub use driver::{register, Info, Ll, Outcome, Then};
pub use emulator::{emulator, quiet_emulator};
pub use log::{capture_logs, logs_for, LOG};
pub use proxy::{tinyproxy, Tinyproxy};
pub use tools::{is_root, require_root, require_tool};

/// A loopback port with nothing listening on it (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a test body on both transports: `both!(name)` runs `fn name(Proto)` as the tests
/// `name::mqtt` and `name::wss`; `both!(name => |p| helper(p, args))` runs the closure.
///
/// ```ignore
/// fn drop_after_connect_is_survived(proto: Proto) { ... }
/// testkit::both!(drop_after_connect_is_survived);
/// testkit::both!(drop_after_poll_is_survived => |p| dropped_once(p, Stage::Poll));
/// ```
#[macro_export]
macro_rules! both {
    () => {};
    ($name:ident => $body:expr $(, $($rest:tt)*)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn mqtt() {
                ($body)($crate::Proto::Mqtt)
            }
            #[test]
            fn wss() {
                ($body)($crate::Proto::Ws)
            }
        }
        $crate::both!($($($rest)*)?);
    };
    ($name:ident $(, $($rest:tt)*)?) => {
        mod $name {
            #[test]
            fn mqtt() {
                super::$name($crate::Proto::Mqtt)
            }
            #[test]
            fn wss() {
                super::$name($crate::Proto::Ws)
            }
        }
        $crate::both!($($($rest)*)?);
    };
}
