//! The one background I/O thread shared by every handle in the process.

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Handle};

use crate::error::Error;

/// A current-thread runtime driven by one dedicated thread: every connection of every handle
/// runs there, so the thread count does not grow with the number of handles.
static RUNTIME: Lazy<Result<Handle, String>> = Lazy::new(|| {
    let rt = Builder::new_current_thread()
        // name resolution runs on the blocking pool: keep it small and bounded
        .max_blocking_threads(2)
        .thread_name("prov-mqtt-io")
        .on_thread_start(block_sigpipe)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("prov-mqtt-io".into())
        .spawn(move || {
            block_sigpipe();
            rt.block_on(std::future::pending::<()>())
        })
        .map_err(|e| e.to_string())?;
    Ok(handle)
});

/// A peer closing a socket must not kill the host process: see `ffi::block_sigpipe_on_this_thread`.
fn block_sigpipe() {
    if !crate::ffi::block_sigpipe_on_this_thread() {
        crate::error!(
            "",
            "cannot block SIGPIPE on the I/O thread: a connection reset may stop the process"
        );
    }
}

/// The shared runtime, started on first use.
pub fn handle() -> Result<Handle, Error> {
    RUNTIME
        .clone()
        .map_err(|why| Error::Internal(format!("cannot start the I/O thread: {why}")))
}
