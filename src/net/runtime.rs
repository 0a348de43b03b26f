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
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("prov-mqtt-io".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))
        .map_err(|e| e.to_string())?;
    Ok(handle)
});

/// The shared runtime, started on first use.
pub fn handle() -> Result<Handle, Error> {
    RUNTIME
        .clone()
        .map_err(|why| Error::Internal(format!("cannot start the I/O thread: {why}")))
}
