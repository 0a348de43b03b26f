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
