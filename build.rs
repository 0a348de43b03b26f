//! Generates include/prov_mqtt_transport.h from src/ffi with cbindgen (pinned in Cargo.toml),
//! compiles src/sdk_log.c (the weak link to the SDK's logger), and sets the shared library's
//! SONAME: the one place it is derived (CMake and scripts/check-abi.sh read it from the library).

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

    hot_symbol_order(&dir);

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

// --- Hot code first (issue 14, goal 1; BENCHMARKS.md section 7) ------------------------------
// The kernel maps a file's cached pages in 64 KiB windows around each faulted page, so the
// library's resident text is the windows its registration code touches: scattered over the whole
// segment, that was all of it (1.3 MB). cmake/hot-symbols.txt (scripts/hot-symbols.sh) lists the
// functions a registration runs, first use first; lld lays them out in that order at the start of
// .text, and cmake/plt-first.ld puts .plt before .text (every thread-local access calls
// __tls_get_addr through it; after .text it kept the cold tail's last window resident). Only when
// rustc links with its own lld (x86_64-unknown-linux-gnu, Rust >= 1.90, no linker or -fuse-ld
// configured): GNU ld has neither option, and a configured linker (the CMake cross path's
// toolchain compiler) is GNU ld's driver. Names the library no longer has are skipped silently.
// Layout only: no behaviour changes.
fn hot_symbol_order(dir: &std::path::Path) {
    let list = dir.join("cmake/hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    let rust_lld = env("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !flags.split('\x1f').any(|f| {
            f.contains("linker") || f.contains("link-self-contained") || f.contains("fuse-ld")
        })
        && rustc_minor().is_some_and(|minor| minor >= 90);
    if rust_lld && list.exists() {
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
// --- end of hot code first ---------------------------------------------------------------------
