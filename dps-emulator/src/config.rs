//! The emulator's configuration, in code ([`Config`]) and as a JSON file ([`ConfigFile`]).

use crate::pki::Pki;
use crate::scenario::Scenario;
use serde::Deserialize;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything an [`crate::Emulator`] needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ID scope devices must name in their username and SAS token.
    pub id_scope: String,
    /// Address both listeners bind to (loopback unless told otherwise).
    pub bind: IpAddr,
    /// MQTT over TLS port; 0 = ephemeral.
    pub mqtt_port: u16,
    /// MQTT over WebSocket (TLS) port; 0 = ephemeral.
    pub ws_port: u16,
    /// Certificates; `None` = generate a PKI at start (see [`crate::Emulator::pki`]).
    pub pki: Option<Pki>,
    /// Individual enrollments: registration id → base64 symmetric key.
    pub individual_keys: HashMap<String, String>,
    /// Enrollment group keys (base64); a device's key is derived from its registration id.
    pub group_keys: Vec<String>,
    /// Accept devices that authenticate with an X.509 certificate chaining to the root CA.
    pub x509_enabled: bool,
    /// Behaviour for registration ids without an entry in `scenarios`.
    pub default_scenario: Scenario,
    /// Behaviour by registration id.
    pub scenarios: HashMap<String, Scenario>,
    /// Append one JSON line per closed connection to this file.
    pub timeline_path: Option<PathBuf>,
    /// Time a client has from TCP accept to a complete CONNECT (TLS and WebSocket handshakes
    /// included), and to finish any packet it has started sending.
    pub connect_timeout: Duration,
    /// Also print log lines on stderr (they are always kept for [`crate::Emulator::log_lines`]).
    pub log_to_stderr: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id_scope: "0ne00000000".to_string(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_port: 8883,
            ws_port: 443,
            pki: None,
            individual_keys: HashMap::new(),
            group_keys: Vec::new(),
            x509_enabled: true,
            default_scenario: Scenario::default(),
            scenarios: HashMap::new(),
            timeline_path: None,
            connect_timeout: Duration::from_secs(10),
            log_to_stderr: true,
        }
    }
}

impl Config {
    /// Default configuration on ephemeral ports (what tests want).
    pub fn ephemeral() -> Config {
        Config {
            mqtt_port: 0,
            ws_port: 0,
            ..Config::default()
        }
    }

    /// Sets the ID scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.id_scope = scope.into();
        self
    }

    /// Sets both ports (0 = ephemeral).
    pub fn with_ports(mut self, mqtt_port: u16, ws_port: u16) -> Self {
        self.mqtt_port = mqtt_port;
        self.ws_port = ws_port;
        self
    }

    /// Uses these certificates.
    pub fn with_pki(mut self, pki: Pki) -> Self {
        self.pki = Some(pki);
        self
    }

    /// Adds an individual enrollment with a symmetric key.
    pub fn with_symmetric_key(
        mut self,
        regid: impl Into<String>,
        key_b64: impl Into<String>,
    ) -> Self {
        self.individual_keys.insert(regid.into(), key_b64.into());
        self
    }

    /// Adds an enrollment group key.
    pub fn with_group_key(mut self, key_b64: impl Into<String>) -> Self {
        self.group_keys.push(key_b64.into());
        self
    }

    /// Sets the scenario of one registration id.
    pub fn with_scenario(mut self, regid: impl Into<String>, scenario: Scenario) -> Self {
        self.scenarios.insert(regid.into(), scenario);
        self
    }

    /// Sets the scenario of registration ids without their own.
    pub fn with_default_scenario(mut self, scenario: Scenario) -> Self {
        self.default_scenario = scenario;
        self
    }

    /// Writes the timeline to this file.
    pub fn with_timeline(mut self, path: impl Into<PathBuf>) -> Self {
        self.timeline_path = Some(path.into());
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The scenario that applies to `regid`.
    pub fn scenario_for(&self, regid: &str) -> &Scenario {
        self.scenarios.get(regid).unwrap_or(&self.default_scenario)
    }
}

/// The JSON config file of `dps-emulator serve --config FILE`. Every field is optional.
///
/// ```json
/// {
///   "id_scope": "0ne00000000",
///   "bind": "127.0.0.1", "mqtt_port": 8883, "ws_port": 443,
///   "certs": "./certs",
///   "individual_keys": { "dev1": "<base64 key>" },
///   "group_keys": ["<base64 group key>"],
///   "x509_enabled": true,
///   "connect_timeout_ms": 10000,
///   "timeline": "timeline.jsonl",
///   "default_scenario": { "retry_after": 1, "polls_before_assigned": 1 },
///   "scenarios": { "slow-device": { "throttle_429": 2, "delay_ms": 200 } }
/// }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// See [`Config::id_scope`].
    pub id_scope: Option<String>,
    /// See [`Config::bind`].
    pub bind: Option<IpAddr>,
    /// See [`Config::mqtt_port`].
    pub mqtt_port: Option<u16>,
    /// See [`Config::ws_port`].
    pub ws_port: Option<u16>,
    /// A directory written by `dps-emulator certs` (relative paths are relative to the file).
    pub certs: Option<PathBuf>,
    /// See [`Config::individual_keys`].
    pub individual_keys: HashMap<String, String>,
    /// See [`Config::group_keys`].
    pub group_keys: Vec<String>,
    /// See [`Config::x509_enabled`].
    pub x509_enabled: Option<bool>,
    /// See [`Config::connect_timeout`], in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// See [`Config::timeline_path`] (relative paths are relative to the working directory).
    pub timeline: Option<PathBuf>,
    /// See [`Config::default_scenario`].
    pub default_scenario: Option<Scenario>,
    /// See [`Config::scenarios`].
    pub scenarios: HashMap<String, Scenario>,
}

impl ConfigFile {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> io::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut file: ConfigFile = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if let (Some(certs), Some(parent)) = (&file.certs, path.parent()) {
            if certs.is_relative() {
                file.certs = Some(parent.join(certs));
            }
        }
        Ok(file)
    }

    /// Applies the file on top of `cfg` (fields the file leaves out keep their value).
    pub fn apply(self, cfg: &mut Config) -> io::Result<()> {
        if let Some(v) = self.id_scope {
            cfg.id_scope = v;
        }
        if let Some(v) = self.bind {
            cfg.bind = v;
        }
        if let Some(v) = self.mqtt_port {
            cfg.mqtt_port = v;
        }
        if let Some(v) = self.ws_port {
            cfg.ws_port = v;
        }
        if let Some(dir) = self.certs {
            cfg.pki = Some(Pki::load_from(&dir)?);
        }
        cfg.individual_keys.extend(self.individual_keys);
        cfg.group_keys.extend(self.group_keys);
        if let Some(v) = self.x509_enabled {
            cfg.x509_enabled = v;
        }
        if let Some(ms) = self.connect_timeout_ms {
            cfg.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = self.timeline {
            cfg.timeline_path = Some(v);
        }
        if let Some(v) = self.default_scenario {
            cfg.default_scenario = v;
        }
        cfg.scenarios.extend(self.scenarios);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let text = r#"{
          "id_scope": "0ne00000000",
          "bind": "127.0.0.1", "mqtt_port": 8883, "ws_port": 443,
          "individual_keys": { "dev1": "a2V5" },
          "group_keys": ["Z3JvdXA="],
          "x509_enabled": true,
          "connect_timeout_ms": 10000,
          "timeline": "timeline.jsonl",
          "default_scenario": { "retry_after": 1, "polls_before_assigned": 1 },
          "scenarios": { "slow-device": { "throttle_429": 2, "delay_ms": 200 } }
        }"#;
        let f: ConfigFile = serde_json::from_str(text).unwrap();
        let mut cfg = Config::default();
        f.apply(&mut cfg).unwrap();
        assert_eq!(cfg.scenario_for("slow-device").throttle_429, 2);
        assert_eq!(cfg.scenario_for("other").throttle_429, 0);
        assert_eq!(cfg.individual_keys["dev1"], "a2V5");
        assert_eq!(cfg.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn readme_config_example_parses() {
        let readme = include_str!("../README.md");
        let section = &readme[readme.find("### Config file").unwrap()..];
        let start = section.find("```json\n").unwrap() + "```json\n".len();
        let end = start + section[start..].find("```").unwrap();
        let f: ConfigFile = serde_json::from_str(&section[start..end]).unwrap();
        assert_eq!(f.scenarios.len(), 6);
        assert_eq!(
            f.scenarios["disabled-device"].final_status,
            crate::Final::Disabled
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<ConfigFile>(r#"{"scope":"x"}"#).is_err());
    }
}
