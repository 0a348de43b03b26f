//! Generates include/prov_mqtt_transport.h from src/ffi with cbindgen (pinned in Cargo.toml),
//! compiles src/sdk_log.c (the weak link to the SDK's logger), and sets the shared library's
//! SONAME: the one place it is derived (CMake and scripts/check-abi.sh read it from the library),
//! and adds the link arguments that make the shared library smaller (`size_link_args`).

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
    size_link_args();

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

// ---- Size of the shared library (benches/size-experiments.md has the figures) ----------------
// Link arguments of the cdylib only (the staticlib's link is the application's). Keep further
// size-related link arguments in this block.
fn size_link_args() {
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
    // Identical code folding: -11 KB stripped. Only lld (and gold) have it, so only when rustc
    // links with its own rust-lld: x86_64 Linux from Rust 1.90 on, with no linker configured
    // (the CMake cross-build path names the toolchain's gcc, which links with GNU ld). Nothing
    // here relies on distinct functions having distinct addresses (Rust makes no such promise);
    // a backtrace through a folded function names one of the functions folded together.
    if uses_rust_lld() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--icf=all");
    }
}

/// Whether rustc links this target with its self-contained rust-lld (its default on
/// x86_64-unknown-linux-gnu from 1.90 on, unless a linker or linker flavour is configured).
fn uses_rust_lld() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu" || !var("RUSTC_LINKER").is_empty() {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if flags
        .split('\x1f')
        .any(|f| f.contains("linker") || f.contains("link-self-contained") || f.contains("fuse-ld"))
    {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
