//! `dps-emulator`: serve a local DPS, make a test PKI, or mint a SAS token.

use clap::{Args, Parser, Subcommand};
use dps_emulator::scenario::{DropAfter, ErrorReply, Final, Stage};
use dps_emulator::{sas, Config, ConfigFile, Emulator, Pki};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "dps-emulator",
    version,
    about = "A local Azure Device Provisioning Service over MQTT/TLS and MQTT/WSS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve DPS over MQTT/TLS and MQTT/WSS until interrupted.
    Serve(Box<Serve>),
    /// Write a test PKI (root CA, intermediate, server and device certificates) into a directory.
    Certs {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// A registration id to make a device certificate for (CN = the id); repeatable.
        #[arg(long = "device")]
        devices: Vec<String>,
    },
    /// Print a SAS token for a symmetric-key device.
    Sas {
        /// ID scope.
        #[arg(long)]
        scope: String,
        /// Registration id.
        #[arg(long)]
        registration_id: String,
        /// Base64 key: the device key, or the group key with --group.
        #[arg(long)]
        key: String,
        /// The key is an enrollment group key: derive the device key first.
        #[arg(long)]
        group: bool,
        /// Validity in seconds from now.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

#[derive(Args)]
struct Serve {
    /// JSON config file (see README); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// MQTT over TLS port (0 = ephemeral) [default 8883].
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// MQTT over WebSocket port (0 = ephemeral) [default 443].
    #[arg(long)]
    ws_port: Option<u16>,
    /// Address to bind [default 127.0.0.1].
    #[arg(long)]
    bind: Option<IpAddr>,
    /// ID scope [default 0ne00000000].
    #[arg(long)]
    scope: Option<String>,
    /// Directory written by `dps-emulator certs`; without it a fresh PKI is generated.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Individual enrollment REGID=BASE64KEY; repeatable.
    #[arg(long = "symmetric-key", value_parser = parse_key_pair)]
    symmetric_keys: Vec<(String, String)>,
    /// Enrollment group key (base64); repeatable.
    #[arg(long = "group-key")]
    group_keys: Vec<String>,
    /// Refuse X.509 devices.
    #[arg(long)]
    no_x509: bool,
    /// Append one JSON line per connection to this file.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Connect timeout in milliseconds [default 10000].
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    #[command(flatten)]
    scenario: ScenarioFlags,
}

/// Flags that change the default scenario (registration ids without a config-file entry).
#[derive(Args)]
struct ScenarioFlags {
    /// retry-after seconds on 202 replies.
    #[arg(long)]
    retry_after: Option<u32>,
    /// Omit retry-after from 202 replies.
    #[arg(long)]
    no_retry_after: bool,
    /// Polls answered 202 before the final 200.
    #[arg(long)]
    polls: Option<u32>,
    /// The first N requests of each registration id get 429.
    #[arg(long)]
    throttle: Option<u32>,
    /// Error reply STATUS:ERRORCODE[:register|poll[:TIMES]], e.g. 401:401002 or 503:503000:poll:2.
    #[arg(long, value_parser = parse_error)]
    error: Option<ErrorReply>,
    /// Message of the --error body.
    #[arg(long)]
    error_message: Option<String>,
    /// Final status: assigned, disabled, or failed[:ERRORCODE[:MESSAGE]].
    #[arg(long, value_parser = parse_final)]
    final_status: Option<Final>,
    /// Refuse CONNECT with this CONNACK code.
    #[arg(long)]
    connack_refuse: Option<u8>,
    /// With --connack-refuse: refuse only the first N connections of each registration id.
    #[arg(long)]
    connack_times: Option<u32>,
    /// Answer SUBSCRIBE with 0x80.
    #[arg(long)]
    suback_fail: bool,
    /// Drop the connection at STAGE (connect, subscribe, register, poll), the first time only.
    #[arg(long)]
    drop_after: Option<Stage>,
    /// With --drop-after: drop every time.
    #[arg(long)]
    drop_always: bool,
    /// Delay every packet sent by this many milliseconds (the connection waits too).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Delay every packet sent by this many milliseconds like a slow link (queued; the
    /// connection keeps reading and answering).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Never answer register or poll requests.
    #[arg(long)]
    never_reply: bool,
    /// Reply topics with retry-after before $rid.
    #[arg(long)]
    reordered_query: bool,
    /// assignedHub in final replies.
    #[arg(long)]
    assigned_hub: Option<String>,
    /// deviceId in final replies [default: the registration id].
    #[arg(long)]
    device_id: Option<String>,
}

fn parse_key_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(r, k)| (r.to_string(), k.to_string()))
        .ok_or_else(|| format!("{s:?}: expected REGID=BASE64KEY"))
}

fn parse_error(s: &str) -> Result<ErrorReply, String> {
    let mut parts = s.split(':');
    let status = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{s:?}: expected STATUS:ERRORCODE[:register|poll[:TIMES]]"))?;
    let error_code = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{s:?}: expected STATUS:ERRORCODE[:register|poll[:TIMES]]"))?;
    let on = parts
        .next()
        .map(str::parse)
        .transpose()?
        .unwrap_or(Stage::Register);
    let times = parts
        .next()
        .map(|t| t.parse().map_err(|_| format!("{t:?} is not a count")))
        .transpose()?;
    Ok(ErrorReply {
        status,
        error_code,
        message: "Error injected by dps-emulator".into(),
        on,
        times,
    })
}

fn parse_final(s: &str) -> Result<Final, String> {
    let mut parts = s.splitn(3, ':');
    match parts.next().unwrap_or_default() {
        "assigned" => Ok(Final::Assigned),
        "disabled" => Ok(Final::Disabled),
        "failed" => Ok(Final::Failed {
            error_code: parts
                .next()
                .map(|c| c.parse().map_err(|_| format!("{c:?} is not an error code")))
                .transpose()?
                .unwrap_or(400209),
            message: parts
                .next()
                .unwrap_or("Registration failed (dps-emulator scenario)")
                .to_string(),
        }),
        other => Err(format!(
            "{other:?}: expected assigned, disabled or failed[:CODE[:MESSAGE]]"
        )),
    }
}

fn build_config(s: Serve) -> std::io::Result<(Config, Option<tempfile::TempDir>)> {
    let mut cfg = Config::default();
    if let Some(path) = &s.config {
        ConfigFile::load(path)?.apply(&mut cfg)?;
    }
    if let Some(v) = s.mqtt_port {
        cfg.mqtt_port = v;
    }
    if let Some(v) = s.ws_port {
        cfg.ws_port = v;
    }
    if let Some(v) = s.bind {
        cfg.bind = v;
    }
    if let Some(v) = s.scope {
        cfg.id_scope = v;
    }
    if let Some(dir) = &s.certs {
        cfg.pki = Some(Pki::load_from(dir)?);
    }
    cfg.individual_keys.extend(s.symmetric_keys);
    cfg.group_keys.extend(s.group_keys);
    if s.no_x509 {
        cfg.x509_enabled = false;
    }
    if let Some(v) = s.timeline {
        cfg.timeline_path = Some(v);
    }
    if let Some(ms) = s.connect_timeout_ms {
        cfg.connect_timeout = Duration::from_millis(ms);
    }
    let f = s.scenario;
    let d = &mut cfg.default_scenario;
    if let Some(v) = f.retry_after {
        d.retry_after = Some(v);
    }
    if f.no_retry_after {
        d.retry_after = None;
    }
    if let Some(v) = f.polls {
        d.polls_before_assigned = v;
    }
    if let Some(v) = f.throttle {
        d.throttle_429 = v;
    }
    if let Some(mut e) = f.error {
        if let Some(m) = f.error_message {
            e.message = m;
        }
        d.error = Some(e);
    }
    if let Some(v) = f.final_status {
        d.final_status = v;
    }
    if let Some(v) = f.connack_refuse {
        d.connack_refuse = Some(v);
    }
    if let Some(v) = f.connack_times {
        d.connack_times = Some(v);
    }
    d.suback_fail |= f.suback_fail;
    if let Some(stage) = f.drop_after {
        d.drop_after = Some(DropAfter {
            stage,
            always: f.drop_always,
        });
    }
    if let Some(v) = f.delay_ms {
        d.delay_ms = v;
    }
    if let Some(v) = f.latency_ms {
        d.latency_ms = v;
    }
    d.never_reply |= f.never_reply;
    d.reordered_query |= f.reordered_query;
    if let Some(v) = f.assigned_hub {
        d.assigned_hub = v;
    }
    if let Some(v) = f.device_id {
        d.device_id = Some(v);
    }
    // Without certificates, generate a PKI and leave it on disk so devices can trust the root CA.
    let mut generated = None;
    if cfg.pki.is_none() {
        let dir = tempfile::Builder::new().prefix("dps-emulator-").tempdir()?;
        let pki = Pki::try_generate(&[])?;
        pki.write_to(dir.path())?;
        cfg.pki = Some(pki);
        generated = Some(dir);
    }
    Ok((cfg, generated))
}

fn serve(s: Serve) -> std::io::Result<()> {
    let (cfg, generated) = build_config(s)?;
    let emu = Emulator::start(cfg)?;
    if let Some(dir) = &generated {
        println!(
            "dps-emulator generated certificates in {} (trust {})",
            dir.path().display(),
            dir.path().join("root-ca.pem").display()
        );
    }
    println!(
        "dps-emulator listening mqtt={} ws={} scope={}",
        emu.mqtt_addr(),
        emu.ws_addr(),
        emu.config().id_scope
    );
    std::io::stdout().flush()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        Ok::<_, std::io::Error>(())
    })?;
    eprintln!("dps-emulator: stopping");
    emu.shutdown();
    drop(generated);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(s) => serve(*s),
        Cmd::Certs { out, devices } => {
            let ids: Vec<&str> = devices.iter().map(String::as_str).collect();
            Pki::try_generate(&ids)
                .and_then(|p| p.write_to(&out))
                .map(|()| println!("wrote the test PKI to {}", out.display()))
        }
        Cmd::Sas {
            scope,
            registration_id,
            key,
            group,
            ttl,
        } => {
            let key = if group {
                sas::derive_device_key(&key, &registration_id)
            } else {
                key
            };
            use base64::Engine as _;
            let valid = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .is_ok();
            if key.is_empty() || !valid {
                Err(std::io::Error::other("the key is not valid base64"))
            } else {
                let expiry = sas::now_unix() + ttl;
                println!("{}", sas::token(&scope, &registration_id, &key, expiry));
                Ok(())
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dps-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
