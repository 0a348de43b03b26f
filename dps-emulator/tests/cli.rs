//! The `dps-emulator` binary: `sas`, `certs` and `serve`.

mod common;
use common::*;
use dps_emulator::{sas, Pki};
use std::io::BufRead;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dps-emulator");

#[test]
fn sas_prints_a_token_the_emulator_accepts() {
    let out = Command::new(BIN)
        .args([
            "sas",
            "--scope",
            SCOPE,
            "--registration-id",
            "sym1",
            "--key",
            KEY,
            "--ttl",
            "60",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(
        sas::verify(token, SCOPE, "sym1", Some(KEY), &[], sas::now_unix()),
        Ok(())
    );

    let out = Command::new(BIN)
        .args([
            "sas",
            "--scope",
            SCOPE,
            "--registration-id",
            "m1",
            "--key",
            GROUP_KEY,
            "--group",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        sas::verify(
            token.trim(),
            SCOPE,
            "m1",
            None,
            &[GROUP_KEY.to_string()],
            sas::now_unix()
        ),
        Ok(())
    );

    let out = Command::new(BIN)
        .args([
            "sas",
            "--scope",
            SCOPE,
            "--registration-id",
            "m1",
            "--key",
            "not base64!",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn certs_writes_a_loadable_pki() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--device", "d1", "--device", "d2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in [
        "root-ca.pem",
        "intermediate-ca.pem",
        "server-chain.pem",
        "server-key.pem",
        "device-d1.pem",
        "device-d1-key.pem",
        "device-d2.pem",
        "device-d2-key.pem",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let pki = Pki::load_from(dir.path()).unwrap();
    assert_eq!(pki.devices.len(), 2);
}

#[test]
fn certs_writes_private_keys_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // a key left world-readable by an older run is tightened too
    std::fs::write(dir.path().join("device-d1-key.pem"), "old").unwrap();
    std::fs::set_permissions(
        dir.path().join("device-d1-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--device", "d1", "--device", "d2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for key in [
        "server-key.pem",
        "intermediate-ca-key.pem",
        "device-d1-key.pem",
        "device-d2-key.pem",
    ] {
        assert_eq!(mode(key), 0o600, "{key}");
    }
    // certificates are public
    assert_eq!(mode("device-d1.pem") & 0o044, 0o044);
    assert!(Pki::load_from(dir.path()).unwrap().devices.len() == 2);
}

/// Stops the child on drop, by its pid: SIGTERM first so it removes the certificates it
/// generated, SIGKILL if that did not work.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let termed = Command::new("kill").args(["-TERM", &pid]).status();
        if termed.map(|s| s.success()).unwrap_or(false) {
            for _ in 0..50 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_with_a_config_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["x1"]);
    pki.write_to(&dir.path().join("certs")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{ "certs": "certs", "scenarios": { "x1": { "polls_before_assigned": 0,
             "assigned_hub": "from-file.example" } } }"#,
    )
    .unwrap();
    let mut child = Child(
        Command::new(BIN)
            .args([
                "serve",
                "--mqtt-port",
                "0",
                "--ws-port",
                "0",
                "--polls",
                "2",
                "--config",
            ])
            .arg(dir.path().join("config.json"))
            .args(["--symmetric-key", &format!("sym1={KEY}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    // dps-emulator listening mqtt=127.0.0.1:PORT ws=127.0.0.1:PORT scope=S
    let addr = |key: &str| -> std::net::SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(line.starts_with("dps-emulator listening "), "{line}");
    assert!(line.ends_with(&format!("scope={SCOPE}")));
    let (mqtt, ws) = (addr("mqtt="), addr("ws="));

    // x1 follows the file's scenario (certificate from the file's PKI)
    let mut c = Client::wss(ws, &pki.root_ca_pem, pki.device("x1"), "mqtt")
        .await
        .unwrap();
    c.start("x1", None).await;
    let r = c.register_to_end("x1").await;
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![202, 200]
    );
    assert_eq!(
        r[1].body["registrationState"]["assignedHub"],
        "from-file.example"
    );
    // sym1 follows the default scenario set by --polls 2
    let mut c = Client::tls(mqtt, &pki.root_ca_pem, None).await.unwrap();
    c.start("sym1", Some(&sas_for("sym1", KEY))).await;
    let r = c.register_to_end("sym1").await;
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![202, 202, 202, 200]
    );
}

#[test]
fn serve_without_certs_generates_and_reports_them() {
    let mut child = Child(
        Command::new(BIN)
            .args(["serve", "--mqtt-port", "0", "--ws-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let root = first
        .split("(trust ")
        .nth(1)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{first}"));
    assert!(std::fs::read_to_string(root)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(lines
        .next()
        .unwrap()
        .unwrap()
        .starts_with("dps-emulator listening"));
}
