//! The library's log lines, captured for the tests that check what was said. Capture is on by
//! default once a driver runs; [`off`] switches it off for good in this process (the leak
//! cycles: a growing `Vec` of lines would look like a leak), leaving the library's own output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

/// Every log line the library printed since capture started.
pub static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

static OFF: AtomicBool = AtomicBool::new(false);

/// Starts capturing (and echoing to stderr) every log line, unless [`off`] was called.
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    if OFF.load(Ordering::Relaxed) {
        return;
    }
    ONCE.call_once(|| {
        prov_mqtt_transport::log::set_sink(|_, line| {
            eprintln!("{line}");
            LOG.lock().unwrap().push(line.to_owned());
        })
    });
}

/// Never capture in this process; call before the first driver runs.
pub fn off() {
    OFF.store(true, Ordering::Relaxed);
}

/// The captured lines that name this registration id.
pub fn logs_for(regid: &str) -> Vec<String> {
    let tag = format!("[{regid}]");
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&tag))
        .cloned()
        .collect()
}

/// The number of lines captured so far (to look at what one call logged).
pub fn mark() -> usize {
    LOG.lock().unwrap().len()
}

/// The lines captured since `mark`.
pub fn since(mark: usize) -> Vec<String> {
    LOG.lock().unwrap()[mark..].to_vec()
}
