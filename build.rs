//! Generates include/prov_mqtt_transport.h from src/ffi with cbindgen (pinned in Cargo.toml) and
//! sets the shared library's SONAME.

use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The SDK-style link line names libprov_mqtt_transport.so; the ABI version is in the SONAME.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libprov_mqtt_transport.so.0");

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
