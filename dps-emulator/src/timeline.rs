//! The timeline: every packet in and out of every connection, with its time since accept.
//! Tests read it to count round trips; with a file configured, each connection becomes one
//! JSON line when it closes.

use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One event of one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Connection number (1, 2, ... in accept order).
    pub conn: u64,
    /// Milliseconds since the TCP accept.
    pub t_ms: f64,
    /// `"in"` (from the device) or `"out"` (to the device); markers use `"in"` for ACCEPT and
    /// `"out"` for CLOSE.
    pub dir: &'static str,
    /// CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH, PUBACK, PINGREQ, PINGRESP, DISCONNECT, the
    /// other MQTT packet names, or the markers ACCEPT and CLOSE.
    pub packet: String,
    /// The topic of a PUBLISH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Size of the MQTT packet in bytes (0 for markers).
    pub bytes: usize,
    /// The registration id, once CONNECT named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regid: Option<String>,
    /// On a CONNECT: the api-version of its user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// On a register or poll PUBLISH from the device: whether its body carried `csr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr: Option<bool>,
}

/// What an entry says besides the packet, for the few packets that carry more.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detail {
    pub(crate) api_version: Option<String>,
    pub(crate) csr: Option<bool>,
}

/// Where entries go: memory for [`crate::Emulator::timeline`], and optionally a file.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    entries: Mutex<Vec<TimelineEntry>>,
    file: Option<PathBuf>,
}

#[derive(Serialize)]
struct ConnLine<'a> {
    conn: u64,
    transport: &'a str,
    peer: &'a str,
    regid: Option<&'a str>,
    events: &'a [TimelineEntry],
}

impl Timeline {
    pub(crate) fn new(file: Option<PathBuf>) -> Timeline {
        Timeline {
            entries: Mutex::new(Vec::new()),
            file,
        }
    }

    pub(crate) fn all(&self) -> Vec<TimelineEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// One connection's part of the timeline. Dropping it (also when its task is cancelled at
/// shutdown) adds the CLOSE marker and writes the connection's line.
pub(crate) struct ConnRecord {
    timeline: Arc<Timeline>,
    conn: u64,
    transport: &'static str,
    peer: String,
    accepted: Instant,
    regid: Option<String>,
    events: Vec<TimelineEntry>,
}

impl ConnRecord {
    pub(crate) fn new(
        timeline: Arc<Timeline>,
        conn: u64,
        transport: &'static str,
        peer: String,
        accepted: Instant,
    ) -> ConnRecord {
        let mut r = ConnRecord {
            timeline,
            conn,
            transport,
            peer,
            accepted,
            regid: None,
            events: Vec::new(),
        };
        r.push("in", "ACCEPT", None, 0);
        r
    }

    pub(crate) fn set_regid(&mut self, regid: &str) {
        self.regid = Some(regid.to_string());
    }

    pub(crate) fn push(
        &mut self,
        dir: &'static str,
        packet: &str,
        topic: Option<&str>,
        bytes: usize,
    ) {
        self.push_detail(dir, packet, topic, bytes, Detail::default());
    }

    pub(crate) fn push_detail(
        &mut self,
        dir: &'static str,
        packet: &str,
        topic: Option<&str>,
        bytes: usize,
        detail: Detail,
    ) {
        let e = TimelineEntry {
            conn: self.conn,
            t_ms: self.accepted.elapsed().as_secs_f64() * 1000.0,
            dir,
            packet: packet.to_string(),
            topic: topic.map(str::to_string),
            bytes,
            regid: self.regid.clone(),
            api_version: detail.api_version,
            csr: detail.csr,
        };
        if let Ok(mut all) = self.timeline.entries.lock() {
            all.push(e.clone());
        }
        self.events.push(e);
    }
}

impl Drop for ConnRecord {
    fn drop(&mut self) {
        self.push("out", "CLOSE", None, 0);
        let Some(path) = &self.timeline.file else {
            return;
        };
        let line = ConnLine {
            conn: self.conn,
            transport: self.transport,
            peer: &self.peer,
            regid: self.regid.as_deref(),
            events: &self.events,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        // One write per line so concurrent connections never interleave inside a line.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "dps-emulator: cannot write timeline {}: {e}",
                path.display()
            );
        }
    }
}
