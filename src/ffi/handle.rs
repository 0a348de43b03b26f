//! What a `PROV_DEVICE_TRANSPORT_HANDLE` points to: a reference-counted handle whose core sits
//! behind a lock that is never held while a C callback runs.

use std::os::raw::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::types::*;
use crate::transport::Transport;

/// "PROVMQTT": tags a live handle; cleared by destroy.
const MAGIC: u64 = 0x5052_4f56_4d51_5454;

/// The caller's callbacks and their contexts, as last given.
#[derive(Clone, Copy)]
pub struct Callbacks {
    pub error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
    pub error_ctx: *mut c_void,
    pub data_cb: PROV_DEVICE_TRANSPORT_REGISTER_CALLBACK,
    pub user_ctx: *mut c_void,
    pub status_cb: PROV_DEVICE_TRANSPORT_STATUS_CALLBACK,
    pub status_ctx: *mut c_void,
    pub challenge_cb: PROV_TRANSPORT_CHALLENGE_CALLBACK,
    pub challenge_ctx: *mut c_void,
    pub json_parse_cb: PROV_TRANSPORT_JSON_PARSE,
    pub json_create_cb: PROV_TRANSPORT_CREATE_JSON_PAYLOAD,
    pub json_ctx: *mut c_void,
    /// `registration_info_hook` (callback None: no hook).
    pub info_hook: PROV_MQTT_REGISTRATION_INFO_HOOK,
}

// SAFETY: the raw pointers are the caller's opaque contexts: never dereferenced here, only
// handed back to the caller's own callbacks. The SDK's threaded layer calls a handle from its
// worker thread under its own lock, so a handle must be movable between threads.
unsafe impl Send for Callbacks {}

pub struct Handle {
    magic: AtomicU64,
    pub core: Mutex<Transport>,
    pub callbacks: Mutex<Callbacks>,
}

impl Handle {
    pub fn new(
        core: Transport,
        error_cb: PROV_TRANSPORT_ERROR_CALLBACK,
        error_ctx: *mut c_void,
    ) -> Handle {
        Handle {
            magic: AtomicU64::new(MAGIC),
            core: Mutex::new(core),
            callbacks: Mutex::new(Callbacks {
                error_cb,
                error_ctx,
                data_cb: None,
                user_ctx: ptr::null_mut(),
                status_cb: None,
                status_ctx: ptr::null_mut(),
                challenge_cb: None,
                challenge_ctx: ptr::null_mut(),
                json_parse_cb: None,
                json_create_cb: None,
                json_ctx: ptr::null_mut(),
                info_hook: PROV_MQTT_REGISTRATION_INFO_HOOK {
                    callback: None,
                    context: ptr::null_mut(),
                },
            }),
        }
    }

    /// Hands one reference to C.
    pub fn into_raw(self) -> PROV_DEVICE_TRANSPORT_HANDLE {
        Arc::into_raw(Arc::new(self)) as PROV_DEVICE_TRANSPORT_HANDLE
    }

    /// Another reference for the duration of a call, so that a callback that destroys the handle
    /// cannot free it under us. None for NULL or a handle that is not live.
    ///
    /// # Safety
    /// `p` is NULL or a value returned by `into_raw` whose C reference was not yet released.
    pub unsafe fn borrow(p: PROV_DEVICE_TRANSPORT_HANDLE) -> Option<Arc<Handle>> {
        if p.is_null() {
            return None;
        }
        let raw = p as *const Handle;
        // SAFETY: per the contract, `raw` points to a Handle whose C reference is held, so its
        // memory is live (whether it is still open is what the magic says, checked here).
        if unsafe { &*raw }.magic.load(Ordering::Acquire) != MAGIC {
            crate::error!("", "the handle {p:p} is not a live transport handle");
            return None;
        }
        // SAFETY: `raw` came from Arc::into_raw and its count is at least one (C's reference,
        // which the magic says destroy has not yet taken back).
        unsafe { Arc::increment_strong_count(raw) };
        // SAFETY: the reference counted just above is the one this Arc takes over.
        Some(unsafe { Arc::from_raw(raw) })
    }

    /// Takes back C's reference (destroy). None for NULL or a handle already destroyed.
    ///
    /// # Safety
    /// As [`Handle::borrow`].
    pub unsafe fn release(p: PROV_DEVICE_TRANSPORT_HANDLE) -> Option<Arc<Handle>> {
        if p.is_null() {
            return None;
        }
        let raw = p as *const Handle;
        // SAFETY: as in `borrow`: the memory is live while C's reference is held.
        let handle = unsafe { &*raw };
        if handle
            .magic
            .compare_exchange(MAGIC, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            crate::error!(
                "",
                "destroy: the handle {p:p} is not a live transport handle"
            );
            return None;
        }
        // SAFETY: `raw` came from Arc::into_raw, and winning the magic swap makes this the one
        // release of C's reference.
        Some(unsafe { Arc::from_raw(raw) })
    }

    /// False once destroy ran (possibly from inside a callback).
    pub fn is_live(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
    }

    pub fn callbacks(&self) -> Callbacks {
        *self.callbacks.lock()
    }
}
