#!/usr/bin/env bash
# The CMake package's cross-build path, with the host standing in for a board: a toolchain file
# that names the host's triple explicitly (cmake/host-as-cross.toolchain.cmake) and a C compiler
# wrapper that logs every call. Checks that the package derives the Rust target from the
# toolchain, runs cargo with --target, links and compiles the C parts with the toolchain's
# compiler and sysroot, takes the artifacts from target/<triple>/, and installs a package a C
# program links against. Built with the dev profile: the path is what is tested, not LTO. Its own
# cargo target directory (target/cross-check), so that it can build while other cargo runs do
# (scripts/test.sh runs it in the background).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
# the GNU triples of real cross compilers (Debian, Yocto, buildroot, musl) map to Rust targets
mkdir -p build
cat >build/rust-triples.cmake <<'TABLE'
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/rust_triple.cmake)
foreach(pair aarch64-linux-gnu=aarch64-unknown-linux-gnu aarch64-poky-linux=aarch64-unknown-linux-gnu
             x86_64-pc-linux-gnu=x86_64-unknown-linux-gnu arm-linux-gnueabihf=arm-unknown-linux-gnueabihf
             arm-buildroot-linux-gnueabihf=arm-unknown-linux-gnueabihf aarch64-linux-musl=aarch64-unknown-linux-musl
             aarch64-poky-linux-musl=aarch64-unknown-linux-musl)
    string(REPLACE "=" ";" p "${pair}")
    list(GET p 0 gnu)
    list(GET p 1 want)
    pmt_rust_triple("${gnu}" got)
    if(NOT got STREQUAL want)
        message(FATAL_ERROR "cross-check: ${gnu} gave the Rust target ${got}, not ${want}")
    endif()
endforeach()
TABLE
cmake -P build/rust-triples.cmake
echo "cross-check: 7 GNU triples map to their Rust targets"
[ "$(uname -m)" = x86_64 ] || { echo "cross-check: written for an x86_64 host" >&2; exit 1; }
out=build/cross
tdir="$PWD/target/cross-check"
rm -rf "$out/cmake" "$out/prefix" "$out/cc.log"
mkdir -p "$out/bin"
log="$PWD/$out/cc.log"
cat >"$out/bin/board-gcc" <<WRAP
#!/bin/sh
printf '%s\n' "\$*" >>"$log"
exec gcc "\$@"
WRAP
chmod +x "$out/bin/board-gcc"
touch "$log"

PMT_CC="$PWD/$out/bin/board-gcc" cmake -S cmake -B "$out/cmake" \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/host-as-cross.toolchain.cmake" \
    -DPMT_CARGO_TARGET_DIR="$tdir" -DPMT_CARGO_PROFILE=dev >"$out/configure.log"
grep -q "Rust target $triple, linked with $PWD/$out/bin/board-gcc" "$out/configure.log" \
    || { cat "$out/configure.log"; echo "cross-check: the Rust target was not derived from the toolchain" >&2; exit 1; }
: >"$log"   # only what cargo runs from here
# cargo relinks when its output is missing: the link, the part under test, runs every time
rm -f "$tdir/$triple/debug/deps/libprov_mqtt_transport.so" "$tdir/$triple/debug/libprov_mqtt_transport.so"
cmake --build "$out/cmake" >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
grep -q -- "--target $triple" "$out/build.log" || { echo "cross-check: cargo ran without --target $triple" >&2; exit 1; }
# the library was linked by the toolchain's compiler, with its sysroot
grep -- "-o [^ ]*libprov_mqtt_transport[^ ]*\.so" "$log" | grep -q -- "--sysroot=/" \
    || { echo "cross-check: the .so was not linked by the toolchain's compiler with --sysroot" >&2; exit 1; }
# and src/sdk_log.c compiled by it (the build script reruns only when its inputs change: when it
# did not, its recorded output says which compiler and flags the cc crate was given)
wrapper="$PWD/$out/bin/board-gcc"
if grep -q -- "sdk_log.c" "$log"; then
    grep -- "sdk_log.c" "$log" | grep -q -- "--sysroot=/" \
        || { echo "cross-check: src/sdk_log.c was not compiled with --sysroot" >&2; exit 1; }
else
    ccout=$(ls -t "$tdir/$triple"/debug/build/prov_mqtt_transport-*/output | head -n 1)
    grep -qx "CC_${triple//-/_} = Some($wrapper)" "$ccout" && grep -qx "CFLAGS_${triple//-/_} = Some(--sysroot=/)" "$ccout" \
        || { echo "cross-check: the cc crate was not given the toolchain's compiler and sysroot ($ccout)" >&2; exit 1; }
fi
echo "linked (and C compiled) by the toolchain's compiler with --sysroot=/"
art="$tdir/$triple/debug/libprov_mqtt_transport.so"
[ -f "$art" ] || { echo "cross-check: $art missing" >&2; exit 1; }
cmake --install "$out/cmake" --prefix "$PWD/$out/prefix" >/dev/null
so=$(readlink -f "$out/prefix/lib/libprov_mqtt_transport.so")
scripts/check-abi.sh "$so"
[ -f "$out/prefix/lib/.debug/$(basename "$so").debug" ] || { echo "cross-check: no debug file" >&2; exit 1; }

# a C program built with the installed package through the same toolchain file
mkdir -p "$out/app"
cat >"$out/app/CMakeLists.txt" <<APP
cmake_minimum_required(VERSION 3.21)
project(cross_app C)
find_package(prov_mqtt_transport CONFIG REQUIRED)
add_executable(sample "$PWD/examples/c/prov_dev_sample.c")
target_compile_definitions(sample PRIVATE _POSIX_C_SOURCE=200809L)
target_link_libraries(sample PRIVATE prov_mqtt_transport::static)
APP
PMT_CC="$PWD/$out/bin/board-gcc" cmake -S "$out/app" -B "$out/app/build" \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/host-as-cross.toolchain.cmake" \
    -DCMAKE_FIND_ROOT_PATH="$PWD/$out/prefix" -Dprov_mqtt_transport_DIR="$PWD/$out/prefix/lib/cmake/prov_mqtt_transport" >/dev/null
cmake --build "$out/app/build" >/dev/null
said=$("$out/app/build/sample" 2>&1 || true)   # no arguments: it prints its usage and exits 2
grep -q usage <<<"$said" || { echo "cross-check: the cross-built sample does not run: $said" >&2; exit 1; }
echo "cross-check: $triple from target/cross-check/$triple/debug, installed, a C program linked statically against it runs"
