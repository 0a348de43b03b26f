//! Generates include/prov_mqtt_transport.h from src/ffi with cbindgen (pinned in Cargo.toml),
//! compiles src/sdk_log.c (the weak link to the SDK's logger), and sets the shared library's
//! SONAME: the one place it is derived (CMake and scripts/check-abi.sh read it from the library),
//! and adds the shared library's link arguments (`link_args`: smaller, hot code first).

use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/sdk_log.c");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The SDK-style link line names libprov_mqtt_transport.so; the ABI version is in the SONAME,
    // which follows the crate's major version.
    let major =
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libprov_mqtt_transport.so.{major}");
    link_args(&dir);

    cc::Build::new()
        .file("src/sdk_log.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("prov_mqtt_transport_sdk_log");

    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include/prov_mqtt_transport.h"));
        }
        Err(e) => panic!("cbindgen could not generate the header: {e}"),
    }
}

// ---- Link arguments of the cdylib (issue 14; benches/size-experiments.md, BENCHMARKS.md §7) ----
// Only the shared library's link (the staticlib's is the application's). Layout and size only:
// no behaviour changes.
fn link_args(dir: &std::path::Path) {
    println!("cargo:rerun-if-env-changed=PMT_PACK_RELATIVE_RELOCS");
    // Relative relocations packed as DT_RELR: -53 KB stripped. glibc loads such a library from
    // 2.36 on (the linker adds a GLIBC_ABI_DT_RELR version need, so an older glibc refuses it
    // with "version `GLIBC_ABI_DT_RELR' not found"), hence opt-in: the CMake package's
    // PMT_PACK_RELATIVE_RELOCS (default: on when the toolchain's glibc is 2.36 or newer) sets it.
    // Both rust-lld and GNU ld (2.38 on) know the option.
    if matches!(
        std::env::var("PMT_PACK_RELATIVE_RELOCS").as_deref(),
        Ok("1" | "ON" | "on" | "TRUE" | "true" | "YES" | "yes")
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
    // The rest only lld has (GNU ld, which the CMake cross path's toolchain compiler drives, has
    // neither option).
    if !uses_rust_lld() {
        return;
    }
    // Identical code folding: -11 KB stripped. Nothing here relies on distinct functions having
    // distinct addresses (Rust makes no such promise); a backtrace through a folded function
    // names one of the functions folded together.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--icf=all");
    // Hot code first. The kernel maps a file's cached pages in 64 KiB windows around each faulted
    // page, so the library's resident text is the windows its registration code touches:
    // scattered over the whole segment, that was all of it (1.3 MB). cmake/hot-symbols.txt
    // (scripts/hot-symbols.sh) lists the functions a registration runs, first use first; lld lays
    // them out in that order at the start of .text, and cmake/plt-first.ld puts .plt before
    // .text (every thread-local access calls __tls_get_addr through it; after .text it kept the
    // cold tail's last window resident). Names the library no longer has are skipped silently.
    let list = dir.join("cmake/hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    if list.exists() {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
        let plt = dir.join("cmake/plt-first.ld");
        println!("cargo:rerun-if-changed={}", plt.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", plt.display());
    }
}

/// Whether rustc links this target with its self-contained rust-lld: its default on
/// x86_64-unknown-linux-gnu from 1.90 on, unless a linker or linker flavour is configured.
fn uses_rust_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu" || !var("RUSTC_LINKER").is_empty() {
        return false;
    }
    let configured = var("CARGO_ENCODED_RUSTFLAGS").split('\x1f').any(|f| {
        f.contains("linker") || f.contains("link-self-contained") || f.contains("fuse-ld")
    });
    !configured && rustc_minor().is_some_and(|minor| minor >= 90)
}

/// The minor version of the rustc cargo builds with ("rustc 1.95.0 (...)" gives 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let version = String::from_utf8(out.stdout).ok()?;
    version
        .split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
