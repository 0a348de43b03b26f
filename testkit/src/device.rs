//! What the LL client is given for one device: the protocol (which table), the service address,
//! the registration id and its credentials, and the options it passes on.

use dps_emulator::pki::Pki;
use dps_emulator::Emulator;
use prov_mqtt_transport::ffi::*;

use crate::driver::Then;

pub const SCOPE: &str = "0ne00000000";
pub const API_VERSION: &str = "2021-06-01";

/// The two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// MQTT over TLS (`Prov_Device_MQTT_Protocol`)
    Mqtt,
    /// MQTT over WebSockets over TLS (`Prov_Device_MQTT_WS_Protocol`)
    Ws,
}

impl Proto {
    pub const BOTH: [Proto; 2] = [Proto::Mqtt, Proto::Ws];

    /// "MQTT" or "WSS".
    pub fn name(self) -> &'static str {
        match self {
            Proto::Mqtt => "MQTT",
            Proto::Ws => "WSS",
        }
    }

    /// "mqtt" or "wss" (for registration ids).
    pub fn tag(self) -> &'static str {
        match self {
            Proto::Mqtt => "mqtt",
            Proto::Ws => "wss",
        }
    }

    /// The SDK's entry point of this transport.
    pub fn entry(self) -> extern "C" fn() -> *const PROV_DEVICE_TRANSPORT_PROVIDER {
        match self {
            Proto::Mqtt => Prov_Device_MQTT_Protocol,
            Proto::Ws => Prov_Device_MQTT_WS_Protocol,
        }
    }

    /// Its static provider table.
    pub fn table(self) -> &'static PROV_DEVICE_TRANSPORT_PROVIDER {
        // SAFETY: the entry points return a pointer to a static table.
        unsafe { &*(self.entry())() }
    }

    /// The emulator's listener for this transport.
    pub fn port(self, emu: &Emulator) -> u16 {
        match self {
            Proto::Mqtt => emu.mqtt_addr().port(),
            Proto::Ws => emu.ws_addr().port(),
        }
    }
}

#[derive(Clone)]
pub enum Auth {
    X509 {
        cert_chain_pem: String,
        key_pem: String,
    },
    SymmetricKey {
        key_b64: String,
    },
}

/// The X.509 credentials the PKI made for `regid`.
pub fn x509(pki: &Pki, regid: &str) -> Auth {
    let d = pki.device(regid).expect("device certificate");
    Auth::X509 {
        cert_chain_pem: d.cert_chain_pem.clone(),
        key_pem: d.key_pem.clone(),
    }
}

/// An HTTP proxy: host, port, and (user, password) for basic auth.
#[derive(Clone)]
pub struct ProxySetting {
    pub host: String,
    pub port: i32,
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct Device {
    pub proto: Proto,
    pub uri: String,
    pub scope: String,
    pub api_version: String,
    pub registration_id: String,
    pub auth: Auth,
    pub trusted_ca: Option<String>,
    /// (name, value) pairs given to set_option as `const uint32_t*`.
    pub u32_options: Vec<(&'static str, u32)>,
    pub proxy: Option<ProxySetting>,
    pub trace: bool,
    /// What the CONNECTED status callback does: [`Then::Later`] is the LL client's way
    /// (register from the next `dowork` round).
    pub on_connected: Then,
    /// What the data callback does: [`Then::Close`] is the LL client's way.
    pub on_data: Then,
    /// Custom allocation data: the `payload` of the registration request.
    pub payload: Option<serde_json::Value>,
    /// Poll as soon as ASSIGNING arrives instead of after the retry interval.
    pub poll_at_once: bool,
    /// (name, value) pairs given to set_option as `const char*` (None: NULL), after the
    /// `uint32_t` ones.
    pub str_options: Vec<(&'static str, Option<String>)>,
    /// Set a `registration_info_hook` that records what it is given ([`crate::Outcome::infos`]).
    pub info_hook: bool,
    /// What the hook does after recording (only [`Then::Nothing`] and [`Then::Destroy`]).
    pub on_info: Then,
    /// Put `"csr"` into the register body itself, as the SDK's CSR branch does.
    pub body_csr: Option<String>,
}

impl Device {
    /// A device as the LL client would set it up: trace on, close in the data callback.
    pub fn new(proto: Proto, uri: impl Into<String>, regid: &str, auth: Auth) -> Device {
        Device {
            proto,
            uri: uri.into(),
            scope: SCOPE.into(),
            api_version: API_VERSION.into(),
            registration_id: regid.into(),
            auth,
            trusted_ca: None,
            u32_options: vec![],
            proxy: None,
            trace: true,
            on_connected: Then::Later,
            on_data: Then::Close,
            payload: None,
            poll_at_once: false,
            str_options: vec![],
            info_hook: false,
            on_info: Then::Nothing,
            body_csr: None,
        }
    }

    /// A device of the emulator: `localhost:<port>`, trusting the emulator's root CA.
    pub fn on(emu: &Emulator, proto: Proto, regid: &str, auth: Auth) -> Device {
        Device::new(proto, format!("localhost:{}", proto.port(emu)), regid, auth)
            .trusting(&emu.pki().root_ca_pem)
    }

    /// The emulator's X.509 device `regid`.
    pub fn x509_on(emu: &Emulator, proto: Proto, regid: &str) -> Device {
        Device::on(emu, proto, regid, x509(emu.pki(), regid))
    }

    pub fn trusting(mut self, ca_pem: &str) -> Device {
        self.trusted_ca = Some(ca_pem.to_owned());
        self
    }

    /// More `uint32_t` options, after those already set.
    pub fn options(mut self, options: &[(&'static str, u32)]) -> Device {
        self.u32_options.extend_from_slice(options);
        self
    }

    /// A `const char*` option (None: NULL), after those already set.
    pub fn option_str(mut self, name: &'static str, value: Option<&str>) -> Device {
        self.str_options.push((name, value.map(str::to_owned)));
        self
    }

    /// With a `registration_info_hook` that records each call.
    pub fn with_info_hook(mut self) -> Device {
        self.info_hook = true;
        self
    }

    pub fn via(mut self, proxy: ProxySetting) -> Device {
        self.proxy = Some(proxy);
        self
    }

    pub fn trace(mut self, on: bool) -> Device {
        self.trace = on;
        self
    }

    /// Leave the handle open in the data callback (the test closes it).
    pub fn keep_open(mut self) -> Device {
        self.on_data = Then::Nothing;
        self
    }
}
