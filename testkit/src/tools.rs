//! What a test needs from the machine. On a laptop without a tool (or without root) the test
//! prints one line, `skipped: <tool> not installed`, and passes; under the README's test command
//! (`PROV_TEST_REQUIRE_ALL=1`, set by scripts/test.sh, which installs everything) a missing tool
//! fails the test instead.

use std::process::{Command, Stdio};

fn required() -> bool {
    std::env::var_os("PROV_TEST_REQUIRE_ALL").is_some_and(|v| v != "0")
}

/// Skips (returns false, after one line) or fails, for `why`. The line names the test (the
/// test harness names each test's thread after it).
pub fn skip(why: &str) -> bool {
    let current = std::thread::current();
    let test = current.name().unwrap_or("test");
    if required() {
        panic!("{test}: cannot run under PROV_TEST_REQUIRE_ALL: {why}");
    }
    // Straight to stderr, not through eprintln!: the test harness would hide it with the
    // output of a passing test.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {why} ({test})");
    false
}

/// True when `program` is on PATH; otherwise skips or fails (see the module docs).
pub fn require_tool(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || skip(&format!("{program} not installed"))
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True as root; otherwise skips or fails, saying what needs root.
pub fn require_root(what: &str) -> bool {
    is_root() || skip(&format!("not root ({what} needs root)"))
}
