//! The library's locks in a child of fork(). A lock that one of the parent's other threads held
//! at the instant of the fork stays held in the child for ever: that thread was not copied. The
//! I/O thread and the resolver threads take the runtime and resolver locks briefly but often,
//! so a fork in the middle of a registration could leave the child's first connection attempt
//! waiting on one of them for good. An atfork handler releases them in the child, where the
//! forking thread is the only thread; the state behind them belongs to the parent and is set
//! aside unread (see `runtime::handle` and `resolve::state`).
#![allow(unsafe_code)]

use parking_lot::Mutex;

/// Installs `in_child` to run in every child of fork(), once per process.
pub fn on_fork_in_child(once: &'static std::sync::Once, in_child: extern "C" fn()) {
    once.call_once(|| {
        // SAFETY: pthread_atfork only records the handler pointers; `in_child` is a plain
        // `extern "C" fn` that lives as long as the library (it is never unloaded while a
        // process can still fork with it registered: the cdylib is not dlclose'd by the SDK).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            crate::error!("", "cannot install the fork handler (pthread_atfork: {rc})");
        }
    });
}

/// In a child of fork() (from an atfork child handler): releases `lock` if a thread of the
/// parent held it when the process forked.
pub fn release_in_child<T>(lock: &Mutex<T>) {
    if lock.is_locked() {
        // SAFETY: atfork child handlers run in the child before fork() returns, when the forking
        // thread is the only thread. This thread does not hold `lock` (fork was not called with
        // it held: no library code forks), so the holder was a thread that does not exist here
        // and will never unlock it. What the lock protects may be mid-update; its owner reads it
        // only to tell that it is the parent's and set it aside, never to use it.
        unsafe { lock.force_unlock() };
    }
}
