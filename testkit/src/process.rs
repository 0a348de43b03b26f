//! This process's own figures from /proc: resident memory, open descriptors, threads. Used by
//! the leak cycles, the chaos run and the flood test (which assert they stay flat or bounded).

/// One reading of /proc/self.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// VmRSS, in kB
    pub rss_kb: u64,
    /// open file descriptors
    pub fds: usize,
    pub threads: u64,
}

impl Figures {
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }
}

/// Reads /proc/self/status and /proc/self/fd now.
pub fn figures() -> Figures {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    Figures {
        rss_kb: field("VmRSS:"),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        threads: field("Threads:"),
    }
}
