//! Log lines: kept in memory for tests ([`crate::Emulator::log_lines`]) and printed on stderr.

use std::sync::Mutex;

/// Lines kept in memory; beyond this the oldest are dropped (a long-running emulator must not
/// grow without bound).
const KEEP: usize = 10_000;

pub(crate) struct Log {
    lines: Mutex<std::collections::VecDeque<String>>,
    stderr: bool,
}

impl Log {
    pub(crate) fn new(stderr: bool) -> Log {
        Log {
            lines: Mutex::new(Default::default()),
            stderr,
        }
    }

    pub(crate) fn line(&self, text: String) {
        if self.stderr {
            eprintln!("dps-emulator: {text}");
        }
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() >= KEEP {
            lines.pop_front();
        }
        lines.push_back(text);
    }

    pub(crate) fn all(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }
}
