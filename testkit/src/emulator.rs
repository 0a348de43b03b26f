//! The DPS emulator: in this process (the tests), or as its own process (the leak cycles, whose
//! memory figures must not include the emulator's).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use dps_emulator::pki::Pki;
use dps_emulator::{Config, Emulator};

/// An emulator in this process with a PKI holding certificates for `devices`; `configure` adds
/// keys, scenarios and settings.
pub fn emulator(devices: &[&str], configure: impl FnOnce(Config) -> Config) -> Emulator {
    let cfg = Config::ephemeral().with_pki(Pki::generate(devices));
    Emulator::start(configure(cfg)).expect("emulator starts")
}

/// The same, without the emulator's own log on stderr.
pub fn quiet_emulator(devices: &[&str], configure: impl FnOnce(Config) -> Config) -> Emulator {
    emulator(devices, |mut cfg| {
        cfg.log_to_stderr = false;
        configure(cfg)
    })
}

/// The emulator binary as a child process, on ephemeral ports; killed and its certificate
/// directory removed on drop.
pub struct Process {
    child: Child,
    /// `localhost:<port>` of the MQTT/TLS listener
    pub mqtt: String,
    /// `localhost:<port>` of the MQTT/WSS listener
    pub ws: String,
    dir: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Process {
    /// Starts `$DPS_EMULATOR` (or `dps-emulator` next to the examples directory) with `pki`'s
    /// certificates, `scope`, and `args` (more `serve` arguments, such as symmetric keys).
    pub fn spawn(pki: &Pki, scope: &str, args: &[String]) -> Process {
        let exe = std::env::var_os("DPS_EMULATOR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                let me = std::env::current_exe().unwrap();
                me.parent().unwrap().parent().unwrap().join("dps-emulator")
            });
        let dir = std::env::temp_dir().join(format!("testkit-pki-{}", std::process::id()));
        pki.write_to(&dir).unwrap();
        let mut child = Command::new(&exe)
            .args(["serve", "--certs"])
            .arg(&dir)
            .args(["--mqtt-port", "0", "--ws-port", "0", "--polls", "0"])
            .args(["--scope", scope])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = lines
            .find_map(|l| l.ok().filter(|l| l.starts_with("dps-emulator listening")))
            .expect("the emulator says where it listens");
        let field = |name: &str| {
            listening
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap()
                .replace("127.0.0.1", "localhost")
        };
        Process {
            mqtt: field("mqtt="),
            ws: field("ws="),
            child,
            dir,
        }
    }
}
