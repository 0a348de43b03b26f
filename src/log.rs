//! The one place that renders log lines. Lines go to stderr unless a sink is installed (Rust
//! tests install one to read what was said). Secrets never reach this module: callers log
//! [`crate::secret::Secret`] only through its redacting `Display`.

use parking_lot::RwLock;

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Info,
    Trace,
}

type Sink = Box<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sends every following line to `sink` instead of stderr.
pub fn set_sink(sink: impl Fn(Level, &str) + Send + Sync + 'static) {
    *SINK.write() = Some(Box::new(sink));
}

/// Writes one line.
pub fn line(level: Level, context: &str, message: std::fmt::Arguments<'_>) {
    let tag = match level {
        Level::Error => "error",
        Level::Info => "info",
        Level::Trace => "trace",
    };
    let text = if context.is_empty() {
        format!("prov_mqtt_transport {tag}: {message}")
    } else {
        format!("prov_mqtt_transport {tag} [{context}]: {message}")
    };
    match &*SINK.read() {
        Some(sink) => sink(level, &text),
        None => eprintln!("{text}"),
    }
}

/// `error!(context, "fmt", args…)`: one line saying what failed and why.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Error, $ctx, format_args!($($arg)*)) };
}

/// `info!(context, "fmt", args…)`
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Info, $ctx, format_args!($($arg)*)) };
}

/// `trace!(context, "fmt", args…)`: the packet trace, shown when `set_trace(true)`.
#[macro_export]
macro_rules! trace {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Trace, $ctx, format_args!($($arg)*)) };
}
