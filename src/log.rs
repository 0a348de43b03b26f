//! The one place that renders log lines, and decides where they go:
//!
//! 1. a sink installed with [`set_sink`] (the Rust tests read what was said), else
//! 2. the SDK's logger, when the process has one: c-shared-utility's `xlogging_get_log_function()`
//!    is found through a weak reference (`src/sdk_log.c`), so nothing links against
//!    c-shared-utility, and when it returns a function every line goes there with its
//!    `LOG_CATEGORY`, our file and line, and `"%s"` + the text; else
//! 3. stderr, for errors and the packet trace (which `set_trace` asks for); info lines (a
//!    registration assigned, a reconnect scheduled) are not printed.
//!
//! Repeated lines are rate-limited per call site and handle ([`Limiter`]), and a later line
//! says how many were suppressed, so a server flooding us cannot flood the log; the C
//! boundary's refusals (one line per refused call) are not limited. Secrets never
//! reach this module: callers log [`crate::secret::Secret`] only through its redacting `Display`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

/// A duration in seconds with `decimals` decimals (at most 9), rounded half to even: what
/// `{:.N}` of `as_secs_f64()` prints, in integer arithmetic, so that the library links no float
/// formatting code (-12 KB; benches/size-experiments.md).
pub(crate) struct Seconds(pub Duration, pub u32);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let decimals = self.1.min(9);
        let unit = 10u128.pow(9 - decimals);
        let nanos = self.0.as_nanos();
        let (mut q, r) = (nanos / unit, nanos % unit);
        if r * 2 > unit || (r * 2 == unit && q % 2 == 1) {
            q += 1;
        }
        let scale = 10u128.pow(decimals);
        match decimals {
            0 => write!(f, "{q}"),
            d => write!(f, "{}.{:0w$}", q / scale, q % scale, w = d as usize),
        }
    }
}

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Info,
    Trace,
}

/// Where a line was written in our code: the file and line the SDK's logger is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Site {
    /// `file!()`, NUL-terminated.
    pub file: &'static str,
    /// `module_path!()`, NUL-terminated (the SDK logger's `func`).
    pub module: &'static str,
    pub line: u32,
}

impl Site {
    fn file(&self) -> &'static str {
        self.file.trim_end_matches('\0')
    }
}

type Sink = Box<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static LIMITER: Mutex<Option<Limiter>> = Mutex::new(None);

/// Sends every following line to `sink` instead of the SDK's logger or stderr.
pub fn set_sink(sink: impl Fn(Level, &str) + Send + Sync + 'static) {
    *SINK.write() = Some(Box::new(sink));
}

/// Writes one line (through the macros, which supply `site`).
pub fn line(level: Level, site: Site, context: &str, message: std::fmt::Arguments<'_>) {
    let text = message.to_string();
    // The C boundary's lines each answer one call the application made (a refused argument, a
    // dead handle): every refused call keeps its line.
    if site.file.contains("src/ffi/") {
        return deliver(level, site, context, &text);
    }
    let (verdict, reports) = {
        let mut limiter = LIMITER.lock();
        limiter
            .get_or_insert_with(Limiter::new)
            .admit(Instant::now(), site, level, context, &text)
    };
    // The lock is released: a logger that calls back into us cannot deadlock.
    for r in reports {
        let text = format!(
            "suppressed {} repeated line(s) from {}:{} in the last {} s",
            r.suppressed,
            r.site.file(),
            r.site.line,
            Seconds(r.over.max(Duration::from_secs(1)), 0)
        );
        deliver(r.level, r.site, &r.context, &text);
    }
    if verdict == Verdict::Write {
        deliver(level, site, context, &text);
    }
}

fn deliver(level: Level, site: Site, context: &str, text: &str) {
    let tag = match level {
        Level::Error => "error",
        Level::Info => "info",
        Level::Trace => "trace",
    };
    let place = if context.is_empty() {
        String::new()
    } else {
        format!(" [{context}]")
    };
    if let Some(sink) = &*SINK.read() {
        return sink(level, &format!("prov_mqtt_transport {tag}{place}: {text}"));
    }
    // The SDK's logger has the category already; the text names us and the handle.
    if sdk::log(level, site, &format!("prov_mqtt_transport{place}: {text}")) {
        return;
    }
    if level != Level::Info {
        eprintln!("prov_mqtt_transport {tag}{place}: {text}");
    }
}

/// The call into `src/sdk_log.c`, the only foreign call of this module.
#[allow(unsafe_code)]
mod sdk {
    use std::ffi::CString;
    use std::os::raw::{c_char, c_int};

    use super::{Level, Site};

    extern "C" {
        /// Returns 1 after handing the line to the function `xlogging_get_log_function()`
        /// returns, 0 when the process has no such function or it returns NULL.
        fn prov_mqtt_transport_sdk_log(
            category: c_int,
            file: *const c_char,
            func: *const c_char,
            line: c_int,
            text: *const c_char,
        ) -> c_int;
    }

    /// `LOG_CATEGORY` of c-shared-utility's xlogging.h.
    fn category(level: Level) -> c_int {
        match level {
            Level::Error => 0, // AZ_LOG_ERROR
            Level::Info => 1,  // AZ_LOG_INFO
            Level::Trace => 2, // AZ_LOG_TRACE
        }
    }

    pub(super) fn log(level: Level, site: Site, text: &str) -> bool {
        // A NUL inside the text would cut it short in C: show it instead.
        let text = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
        let file = CString::new(site.file.trim_end_matches('\0')).unwrap_or_default();
        let func = CString::new(site.module.trim_end_matches('\0')).unwrap_or_default();
        let line = c_int::try_from(site.line).unwrap_or(c_int::MAX);
        // SAFETY: the three pointers are NUL-terminated strings that live until the call
        // returns; the C function only reads them and keeps none of them.
        unsafe {
            prov_mqtt_transport_sdk_log(
                category(level),
                file.as_ptr(),
                func.as_ptr(),
                line,
                text.as_ptr(),
            ) != 0
        }
    }
}

/// Lines one call site may write for one handle per window, whatever their text.
const PER_SITE: u32 = 20;
/// Lines with the same text one call site may write for one handle per window.
const PER_TEXT: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Write,
    Suppress,
}

/// Lines of one site and handle that were not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub site: Site,
    pub context: String,
    /// The most important level among them.
    pub level: Level,
    pub suppressed: u64,
    /// From the first suppressed line to the report.
    pub over: Duration,
}

struct Window {
    start: Instant,
    lines: u32,
    /// (hash of the text, lines with that text) in this window
    texts: Vec<(u64, u32)>,
    suppressed: u64,
    first_suppressed: Option<Instant>,
    level: Level,
}

/// Counts lines per (site, handle) in one-second windows. A site may write [`PER_TEXT`] lines
/// with the same text and [`PER_SITE`] lines in all per window (lines without a handle, the C
/// boundary's argument errors, have only the same-text bound: each says something else); the
/// rest are counted and reported when the window is over, by the site's next line or by any
/// line after a sweep. Time is an argument, so the tests need no sleeps.
pub(crate) struct Limiter {
    windows: HashMap<(Site, String), Window>,
    last_sweep: Option<Instant>,
}

impl Limiter {
    pub(crate) fn new() -> Self {
        Self {
            windows: HashMap::new(),
            last_sweep: None,
        }
    }

    pub(crate) fn admit(
        &mut self,
        now: Instant,
        site: Site,
        level: Level,
        context: &str,
        text: &str,
    ) -> (Verdict, Vec<Report>) {
        let mut reports = Vec::new();
        if self
            .last_sweep
            .map_or(true, |t| now.saturating_duration_since(t) >= WINDOW)
        {
            self.sweep(now, &mut reports);
            self.last_sweep = Some(now);
        }
        let key = (site, context.to_owned());
        let w = self.windows.entry(key).or_insert_with(|| Window {
            start: now,
            lines: 0,
            texts: Vec::new(),
            suppressed: 0,
            first_suppressed: None,
            level,
        });
        if now.saturating_duration_since(w.start) >= WINDOW {
            if let Some(r) = Self::report(site, context, w, now) {
                reports.push(r);
            }
            w.start = now;
            w.lines = 0;
            w.texts.clear();
        }
        let hash = text_hash(text);
        let same = w.texts.iter().position(|(h, _)| *h == hash);
        let same_count = same.map_or(0, |i| w.texts[i].1);
        let site_full = !context.is_empty() && w.lines >= PER_SITE;
        if site_full || same_count >= PER_TEXT {
            if w.suppressed == 0 {
                w.first_suppressed = Some(now);
                w.level = level;
            }
            w.level = w.level.min(level);
            w.suppressed += 1;
            return (Verdict::Suppress, reports);
        }
        w.lines += 1;
        match same {
            Some(i) => w.texts[i].1 += 1,
            // a handle-less site can see many texts: keep the list short, count the rest as new
            None if w.texts.len() < 64 => w.texts.push((hash, 1)),
            None => {}
        }
        (Verdict::Write, reports)
    }

    fn report(site: Site, context: &str, w: &mut Window, now: Instant) -> Option<Report> {
        if w.suppressed == 0 {
            return None;
        }
        let r = Report {
            site,
            context: context.to_owned(),
            level: w.level,
            suppressed: w.suppressed,
            over: now.saturating_duration_since(w.first_suppressed.unwrap_or(w.start)),
        };
        w.suppressed = 0;
        w.first_suppressed = None;
        Some(r)
    }

    /// Reports the suppressed lines of every finished window and forgets the idle ones, so the
    /// table stays as small as the set of sites and handles logging right now.
    fn sweep(&mut self, now: Instant, reports: &mut Vec<Report>) {
        self.windows.retain(|(site, context), w| {
            if now.saturating_duration_since(w.start) < WINDOW {
                return true;
            }
            if let Some(r) = Self::report(*site, context, w, now) {
                reports.push(r);
            }
            false
        });
    }
}

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The call site of a log macro.
#[doc(hidden)]
#[macro_export]
macro_rules! log_site {
    () => {
        $crate::log::Site {
            file: concat!(file!(), "\0"),
            module: concat!(module_path!(), "\0"),
            line: line!(),
        }
    };
}

/// `error!(context, "fmt", args…)`: one line saying what failed and why.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Error, $crate::log_site!(), $ctx, format_args!($($arg)*)) };
}

/// `info!(context, "fmt", args…)`: goes to the SDK's logger only (or a test sink).
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Info, $crate::log_site!(), $ctx, format_args!($($arg)*)) };
}

/// `trace!(context, "fmt", args…)`: the packet trace, shown when `set_trace(true)`.
#[macro_export]
macro_rules! trace {
    ($ctx:expr, $($arg:tt)*) => { $crate::log::line($crate::log::Level::Trace, $crate::log_site!(), $ctx, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Site = Site {
        file: "src/a.rs\0",
        module: "a\0",
        line: 1,
    };
    const B: Site = Site {
        file: "src/b.rs\0",
        module: "b\0",
        line: 2,
    };

    fn run(l: &mut Limiter, now: Instant, site: Site, ctx: &str, text: &str) -> Verdict {
        l.admit(now, site, Level::Error, ctx, text).0
    }

    #[test]
    fn a_flood_of_one_line_is_cut_to_a_few_per_second_and_the_rest_are_counted() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let written = (0..1000)
            .filter(|i| {
                let now = t0 + Duration::from_micros(*i * 500); // 1000 lines in 0.5 s
                run(&mut l, now, A, "dev", "ignored an unsolicited reply") == Verdict::Write
            })
            .count();
        assert_eq!(written, PER_TEXT as usize);
        // the next second: the site's first line comes with the report
        let (v, reports) = l.admit(
            t0 + Duration::from_millis(1200),
            A,
            Level::Error,
            "dev",
            "ignored an unsolicited reply",
        );
        assert_eq!(v, Verdict::Write);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].suppressed, 1000 - u64::from(PER_TEXT));
        assert_eq!(reports[0].context, "dev");
        assert_eq!(reports[0].level, Level::Error);
        assert_eq!(reports[0].site, A);
    }

    #[test]
    fn seconds_print_as_the_float_formatting_they_replace() {
        let mut compared = 0;
        for k in 0..20_000u64 {
            let d = Duration::from_nanos(k * 1_234_567 + k % 7);
            for decimals in 0..=3u32 {
                let unit = 10u128.pow(9 - decimals);
                if (d.as_nanos() % unit) * 2 == unit {
                    continue; // an exact tie: rounded half to even, where f64 rounds its nearest value
                }
                let want = format!("{:.*}", decimals as usize, d.as_secs_f64());
                assert_eq!(
                    Seconds(d, decimals).to_string(),
                    want,
                    "{d:?} with {decimals}"
                );
                compared += 1;
            }
        }
        assert!(compared > 79_000, "{compared}");
        assert_eq!(Seconds(Duration::from_millis(1250), 1).to_string(), "1.2");
        assert_eq!(Seconds(Duration::from_millis(1350), 1).to_string(), "1.4");
        assert_eq!(Seconds(Duration::from_millis(500), 0).to_string(), "0");
        assert_eq!(
            Seconds(Duration::from_secs(90_000), 2).to_string(),
            "90000.00"
        );
    }

    #[test]
    fn different_texts_of_one_site_are_cut_at_the_site_bound() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let written = (0..100)
            .filter(|i| run(&mut l, t0, A, "dev", &format!("$rid={i}")) == Verdict::Write)
            .count();
        assert_eq!(written, PER_SITE as usize);
    }

    #[test]
    fn sites_and_handles_have_their_own_budgets() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..PER_TEXT {
            assert_eq!(run(&mut l, t0, A, "dev", "x"), Verdict::Write);
        }
        assert_eq!(run(&mut l, t0, A, "dev", "x"), Verdict::Suppress);
        assert_eq!(run(&mut l, t0, B, "dev", "x"), Verdict::Write);
        assert_eq!(run(&mut l, t0, A, "other", "x"), Verdict::Write);
        assert_eq!(run(&mut l, t0, A, "dev", "y"), Verdict::Write);
    }

    #[test]
    fn lines_without_a_handle_are_bound_only_by_their_text() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let written = (0..200)
            .filter(|i| run(&mut l, t0, A, "", &format!("argument {i} is NULL")) == Verdict::Write)
            .count();
        assert_eq!(written, 200);
        let same = (0..200)
            .filter(|_| run(&mut l, t0, B, "", "the handle is not live") == Verdict::Write)
            .count();
        assert_eq!(same, PER_TEXT as usize);
    }

    #[test]
    fn a_quiet_site_is_reported_by_any_later_line_and_then_forgotten() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..10 {
            run(&mut l, t0, A, "dev", "x");
        }
        let (v, reports) = l.admit(
            t0 + Duration::from_secs(2),
            B,
            Level::Info,
            "dev",
            "something else",
        );
        assert_eq!(v, Verdict::Write);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].site, A);
        assert_eq!(reports[0].suppressed, 5);
        assert_eq!(reports[0].over, Duration::from_secs(2));
        assert_eq!(l.windows.len(), 1, "only B's window is left");
    }

    #[test]
    fn the_report_carries_the_most_important_level_suppressed() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        for level in [Level::Trace, Level::Trace, Level::Error] {
            for _ in 0..PER_TEXT {
                l.admit(t0, A, level, "dev", "x");
            }
        }
        let (_, reports) = l.admit(t0 + WINDOW, A, Level::Trace, "dev", "x");
        assert_eq!(reports[0].level, Level::Error);
        assert_eq!(reports[0].suppressed, 2 * u64::from(PER_TEXT));
    }

    #[test]
    fn lines_under_the_bounds_are_all_written() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        // a registration's trace: a handful of packets each way, every few milliseconds
        for i in 0..12u64 {
            let now = t0 + Duration::from_millis(i * 3);
            let v = l.admit(now, A, Level::Trace, "dev", &format!("-> packet {i}"));
            assert_eq!(v, (Verdict::Write, vec![]));
        }
    }
}
