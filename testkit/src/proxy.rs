//! A real tinyproxy (Debian's) on a free loopback port.

use std::time::{Duration, Instant};

/// tinyproxy with basic auth `user`/`password`; killed and its directory removed on drop.
pub struct Tinyproxy {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts tinyproxy; `extra` are more configuration lines. Call
/// [`crate::require_tool`]`("tinyproxy")` first.
pub fn tinyproxy(name: &str, password: &str, extra: &str) -> Tinyproxy {
    let port = crate::free_port();
    let dir = std::env::temp_dir().join(format!("prov-proxy-{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nBasicAuth user {password}\nLogLevel Info\nMaxClients 20\n{extra}"
        ),
    )
    .unwrap();
    let child = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy is installed (scripts/test.sh installs it: apt-get install tinyproxy)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tinyproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Tinyproxy { child, port, dir }
}
