//! What the library hands back once the last handle is gone. A device that registers once at
//! boot keeps running for months; without this, every page of the library's code and read-only
//! data a registration touched (most of them: the kernel maps a file's cached pages around each
//! fault) stays in its resident set, and so does the deepest the I/O thread's stack ever went.
//!
//! [`RELEASE_AFTER`] after the last handle is destroyed, with no handle alive then, the I/O
//! thread:
//! - drops its mappings of the shared library's pages that are never written (code, read-only
//!   data: the segments without write permission; RELRO, which the loader writes, lies in a
//!   writable one). They stay in the page cache; the next registration maps them again with
//!   minor faults.
//! - drops the pages of its own stack below where it stands.
//! - asks malloc to return its arenas' free pages (glibc).
//!
//! When this code is linked into the executable (the static library), the executable is left
//! alone. So is a process under a debugger, whose breakpoints live in private copies of code
//! pages that dropping would discard.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// After the last destroy: the closes in flight have finished by then (they get
/// `link::CLOSE_GRACE`, 2 s).
pub const RELEASE_AFTER: Duration = Duration::from_secs(3);

/// Handles alive in the process.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Handles ever created: a release scheduled before a handle came and went is stale.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// Held by every handle for its life (see [`hold`]).
pub struct Held(());

/// Counts one more live handle until the returned value is dropped.
pub fn hold() -> Held {
    LIVE.fetch_add(1, Ordering::AcqRel);
    CREATED.fetch_add(1, Ordering::AcqRel);
    Held(())
}

impl Drop for Held {
    fn drop(&mut self) {
        if LIVE.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last one: only a runtime this process already has (a handle that never connected
        // did not start one, and there is nothing to hand back then).
        let Some(rt) = super::runtime::running() else {
            return;
        };
        let created = CREATED.load(Ordering::Acquire);
        rt.spawn(async move {
            tokio::time::sleep(RELEASE_AFTER).await;
            // Quietly: a log line would map the formatting code straight back in.
            if LIVE.load(Ordering::Acquire) == 0 && CREATED.load(Ordering::Acquire) == created {
                release();
            }
        });
    }
}

/// Releases what the module docs say, on the calling thread's stack.
fn release() {
    if !traced() {
        for (start, end) in code_pages().unwrap_or_default() {
            dont_need(start, end);
        }
    }
    stack_below_here();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

/// A debugger has this process (its breakpoints are private copies of code pages).
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .is_some_and(|pid| pid.trim() != "0")
        })
        .unwrap_or(true)
}

#[cfg(target_pointer_width = "64")]
type Phdr = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type Phdr = libc::Elf32_Phdr;

/// The page-aligned ranges [start, end) of this shared library's segments that are never
/// written; None when this code is not in a shared library.
fn code_pages() -> Option<Vec<(usize, usize)>> {
    struct Search {
        at: usize,
        found: Option<Vec<(usize, usize)>>,
        page: usize,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes the `Search` given below and a valid `info` whose
        // program headers (`dlpi_phnum` of them) stay mapped during the callback.
        let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
        // SAFETY: as above.
        let phdrs =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr as usize;
        let range = |p: &Phdr| {
            let start = base + p.p_vaddr as usize;
            (start, start + p.p_memsz as usize)
        };
        let loads = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        if !loads
            .clone()
            .any(|p| (range(p).0..range(p).1).contains(&search.at))
        {
            return 0;
        }
        // SAFETY: dlpi_name is NUL-terminated; "" for the main program.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        if name.to_bytes().is_empty() {
            return 1; // linked into the executable: found, and left alone
        }
        let page = search.page;
        let pages = loads
            .filter(|p| p.p_flags & libc::PF_W == 0)
            .map(|p| {
                // whole pages only: a segment's first and last pages may be shared with another
                let (start, end) = range(p);
                (start.div_ceil(page) * page, end / page * page)
            })
            .filter(|(start, end)| start < end)
            .collect();
        search.found = Some(pages);
        1
    }
    let mut search = Search {
        at: code_pages as fn() -> Option<Vec<(usize, usize)>> as usize,
        found: None,
        page: page_size(),
    };
    // SAFETY: `each` matches dl_iterate_phdr's callback type and only reads what it is given;
    // `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut search as *mut Search).cast()) };
    search.found
}

/// Drops this process's mappings of [start, end) (nothing if the kernel refuses).
fn dont_need(start: usize, end: usize) {
    // SAFETY: [start, end) is a whole-page part of a read-only file mapping of this library
    // (code_pages): its pages were never written, so dropping them loses nothing; the next
    // access maps the file's page again.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
}

/// Drops the pages of the calling thread's stack below its current frame (a margin kept); the
/// bytes dropped.
fn stack_below_here() -> usize {
    let page = page_size();
    let here = {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    };
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; it is destroyed after use.
    let low = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return 0;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return 0;
        }
        addr as usize
    };
    // two pages for madvise's own frame (no signal handler runs on the library's threads:
    // they block every asynchronous signal)
    let high = (here / page).saturating_sub(2) * page;
    let low = low.div_ceil(page) * page;
    if low >= high {
        return 0;
    }
    // SAFETY: [low, high) is this thread's own stack below every live frame of it (the stack
    // grows down from `here`, and 8 KB are left for the call made from here); nothing is
    // stored there, so its pages can be dropped: they come back zeroed if the stack grows again.
    let rc = unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) };
    if rc == 0 {
        high - low
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident KB of the mapping that holds `addr` (/proc/self/smaps).
    fn resident_kb_at(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ').filter(|(r, _)| r.contains('-')) {
                let (a, b) = range.split_once('-').unwrap();
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    return kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[inline(never)]
    fn deep(n: usize) -> u64 {
        let mut frame = [0u8; 4096];
        frame[n % 4096] = n as u8;
        let below = if n == 0 { 0 } else { deep(n - 1) };
        std::hint::black_box(&frame);
        below + u64::from(frame[n % 4096])
    }

    #[test]
    fn the_stack_below_the_caller_is_handed_back_and_usable_again() {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let expected = deep(128);
                let marker = 0u8;
                let here = std::hint::black_box(&marker) as *const u8 as usize;
                let before = resident_kb_at(here);
                let released = stack_below_here();
                let after = resident_kb_at(here);
                assert!(released >= 400 * 1024, "released {released}");
                assert!(after + 400 <= before, "resident {before} KB -> {after} KB");
                assert_eq!(deep(128), expected, "the stack works again");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn code_linked_into_the_executable_is_left_alone() {
        // the unit tests link this crate into the test executable
        assert_eq!(code_pages(), None);
    }
}
