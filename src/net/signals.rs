//! The signal mask of every thread the library starts. A C application decides where its
//! asynchronous signals go (a `sigwait` thread, a handler on the main thread) by blocking them on
//! its own threads; a thread of ours that left them unblocked would receive them instead, and a
//! SIGTERM meant for the application's `sigwait` would kill the process. So the library's threads
//! block every asynchronous signal, and keep only the synchronous ones, which the kernel sends
//! to the faulting thread itself (blocking those would not stop them, only make a crash silent).
//!
//! The mask is set in the spawning thread around the spawn, so the new thread inherits it from
//! its first instruction: no window in which a signal can land on it.
//!
//! This also covers SIGPIPE: a write to a socket the peer has closed raises it on the writing
//! thread, and its default action kills the process (a C host, unlike a Rust binary, does not
//! ignore it). The SDK's socket layer sends with `MSG_NOSIGNAL`; rustls writes through tokio's
//! `writev`, which has no such flag. Blocked, the write fails with EPIPE, an ordinary "connection
//! lost" fault.
#![allow(unsafe_code)]

/// Raised by the instruction that faults, on the thread that executes it.
const SYNCHRONOUS: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Runs `spawn` with every asynchronous signal blocked on the calling thread, then restores the
/// caller's mask: a thread started inside `spawn` keeps the blocked mask for its whole life.
pub fn blocked_while<T>(spawn: impl FnOnce() -> T) -> T {
    let _restore = Restore::block_async();
    spawn()
}

/// The caller's mask, put back on drop (also when `spawn` unwinds).
struct Restore {
    old: Option<libc::sigset_t>,
}

impl Restore {
    fn block_async() -> Restore {
        // SAFETY: `all` and `old` are local sigset_t values; sigfillset initialises `all` before
        // sigdelset and pthread_sigmask read it, and pthread_sigmask writes `old` completely when
        // it succeeds (it is read only then). pthread_sigmask changes the calling thread's mask
        // only. glibc leaves its internal signals (thread cancellation, setxid) out of the set.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            let filled = libc::sigfillset(&mut all) == 0
                && SYNCHRONOUS
                    .iter()
                    .all(|&s| libc::sigdelset(&mut all, s) == 0);
            if filled && libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) == 0 {
                return Restore { old: Some(old) };
            }
        }
        crate::error!(
            "",
            "cannot block signals for a new library thread: it may receive the application's \
             signals (SIGPIPE may stop the process on a connection reset)"
        );
        Restore { old: None }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            // SAFETY: `old` is the mask pthread_sigmask returned for this thread; restoring it
            // with SIG_SETMASK and a NULL old-set pointer is allowed.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's blocked signals among `signals`.
    fn blocked(signals: &[libc::c_int]) -> Vec<libc::c_int> {
        // SAFETY: `now` is a local sigset_t written by pthread_sigmask (SIG_BLOCK with a NULL
        // set only queries the mask) before sigismember reads it.
        unsafe {
            let mut now: libc::sigset_t = std::mem::zeroed();
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now),
                0
            );
            signals
                .iter()
                .copied()
                .filter(|&s| libc::sigismember(&now, s) == 1)
                .collect()
        }
    }

    const ASYNC: [libc::c_int; 8] = [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGCHLD,
        libc::SIGALRM,
    ];

    #[test]
    fn a_thread_started_inside_blocks_every_asynchronous_signal_and_no_synchronous_one() {
        std::thread::spawn(|| {
            let before = blocked(&ASYNC);
            let inside =
                blocked_while(|| std::thread::spawn(|| (blocked(&ASYNC), blocked(&SYNCHRONOUS))))
                    .join()
                    .unwrap();
            assert_eq!(inside, (ASYNC.to_vec(), vec![]));
            // the spawning thread has its own mask back
            assert_eq!(blocked(&ASYNC), before);
        })
        .join()
        .unwrap();
    }
}
