//! SIGPIPE. A write to a socket the peer has closed raises SIGPIPE, whose default action kills
//! the process; a C host (unlike a Rust binary) does not ignore it. The SDK's socket layer sends
//! with `MSG_NOSIGNAL`; rustls writes through tokio's `writev`, which has no such flag. So every
//! thread of the I/O runtime blocks SIGPIPE for itself: the write then fails with EPIPE, an
//! ordinary "connection lost" fault, and the application's own signal handling is untouched.

/// Blocks SIGPIPE for the calling thread only. False (and nothing changed) if it could not.
pub fn block_sigpipe_on_this_thread() -> bool {
    // SAFETY: `set` is a local sigset_t that sigemptyset initialises before use; sigaddset and
    // pthread_sigmask read it through valid pointers; pthread_sigmask changes only the calling
    // thread's mask, and a NULL old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set) == 0
            && libc::sigaddset(&mut set, libc::SIGPIPE) == 0
            && libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    }
}
