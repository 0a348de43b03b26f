//! The one background I/O thread shared by every handle in the process, and the short-lived
//! threads that do blocking work for it (name resolution, the first read of the platform trust
//! store). README "Threads" says which threads exist, when, and why.

use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle};

use super::signals;
use crate::error::Error;

/// The stack of the library's threads. Given explicitly so that starting a thread never reads
/// `RUST_MIN_STACK` from the environment (see README "Threads", setenv).
pub const STACK_SIZE: usize = 1 << 20;

/// The runtime of this process, and the process it was started in.
struct Current {
    pid: u32,
    handle: Handle,
    /// In a child of fork(): the parent's, kept and never dropped (see [`handle`]).
    _inherited: Option<Box<Current>>,
}

/// Not a `Lazy<Result<…>>`: a start that failed (EAGAIN from pthread_create, no descriptor for
/// epoll) is tried again on the next use instead of failing every later registration.
static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// The shared runtime, started on first use, and started again in a child of `fork`.
pub fn handle() -> Result<Handle, Error> {
    static FORK_HANDLER: std::sync::Once = std::sync::Once::new();
    super::fork::on_fork_in_child(&FORK_HANDLER, release_in_child);
    let pid = std::process::id();
    let mut current = CURRENT.lock();
    if let Some(c) = current.as_ref().filter(|c| c.pid == pid) {
        return Ok(c.handle.clone());
    }
    // First use, or a child of fork(): the runtime there is the parent's, and its I/O thread was
    // not copied, so nothing would ever run on it. Its state may have been caught mid-update by
    // the fork: it is kept as it is, never dropped, and this process starts its own.
    let handle = start()?;
    let inherited = current.take().map(Box::new);
    *current = Some(Current {
        pid,
        handle: handle.clone(),
        _inherited: inherited,
    });
    Ok(handle)
}

/// The runtime, if this process has started it (never starts one).
pub fn running() -> Option<Handle> {
    let pid = std::process::id();
    CURRENT
        .lock()
        .as_ref()
        .filter(|c| c.pid == pid)
        .map(|c| c.handle.clone())
}

extern "C" fn release_in_child() {
    super::fork::release_in_child(&CURRENT);
}

/// A current-thread runtime driven by one dedicated thread: every connection of every handle
/// runs there, so the thread count does not grow with the number of handles. Tokio's own
/// blocking pool is not used (see [`blocking`]); if a dependency ever used it, its threads
/// would be started by the I/O thread and inherit its signal mask.
fn start() -> Result<Handle, Error> {
    let rt = Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::ThreadStart {
            thread: "I/O",
            why: format!("cannot create its event loop: {e}"),
        })?;
    let handle = rt.handle().clone();
    signals::blocked_while(|| {
        std::thread::Builder::new()
            .name("prov-mqtt-io".into())
            .stack_size(STACK_SIZE)
            .spawn(move || rt.block_on(std::future::pending::<()>()))
    })
    .map_err(|e| Error::ThreadStart {
        thread: "I/O",
        why: e.to_string(),
    })?;
    Ok(handle)
}

/// Runs `work` on a thread of its own that ends when `work` returns, with every asynchronous
/// signal blocked. A thread that ends takes its per-thread state with it (glibc's resolver
/// context is freed at thread exit; on a pooled thread that lives to process exit valgrind
/// calls it lost), and a thread that cannot start is an error now, not a panic on the I/O
/// thread.
/// Its handle may be joined once `work` has returned (dropping it detaches the thread).
pub fn spawn_thread(
    name: &str,
    work: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, Error> {
    signals::blocked_while(|| {
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(STACK_SIZE)
            .spawn(work)
    })
    .map_err(|e| Error::ThreadStart {
        thread: "blocking-work",
        why: format!("{name}: {e}"),
    })
}

/// `work` on a short-lived thread of its own (see [`spawn_thread`]), awaited without blocking
/// the I/O thread.
pub async fn blocking<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    drop(spawn_thread(name, move || {
        let _ = tx.send(work());
    })?);
    rx.await
        .map_err(|_| Error::Internal(format!("the {name} thread ended without an answer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;
    use std::time::Duration;

    /// Runs `future` on the I/O thread; returns its output and that thread's id.
    fn on_io_thread<T: Send + 'static>(
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> (T, ThreadId) {
        let (tx, rx) = std::sync::mpsc::channel();
        handle().unwrap().spawn(async move {
            let io = std::thread::current().id();
            let _ = tx.send((future.await, io));
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn every_handle_runs_on_the_one_io_thread() {
        let ((), a) = on_io_thread(async {});
        let ((), b) = on_io_thread(async {});
        assert_eq!(a, b);
        assert_ne!(a, std::thread::current().id());
    }

    #[test]
    fn blocking_work_runs_on_a_thread_of_its_own_and_answers() {
        let (answer, io) = on_io_thread(blocking("prov-mqtt-test", || {
            (42, std::thread::current().id())
        }));
        let (value, worker) = answer.unwrap();
        assert_eq!(value, 42);
        assert_ne!(worker, io);
    }
}
