#!/usr/bin/env bash
# The C harness, as a customer consumes the library: build and install the CMake package into
# build/prefix, check the pkg-config module, then build ctest/ against the installed package and
# run it three times: plain, under valgrind memcheck (errors or definite leaks fail), and with
# AddressSanitizer + UndefinedBehaviorSanitizer. Usage: scripts/ctest.sh [plain|valgrind|asan]...
# `scripts/ctest.sh --package-build` only builds the package (scripts/test.sh does that early, in
# the background); a later run finds it built.
set -euo pipefail
cd "$(dirname "$0")/.."
build_package() {
    cmake -S cmake -B build/cmake -DPMT_CARGO_TARGET_DIR="$PWD/target" >/dev/null
    cmake --build build/cmake
}
if [ "${1:-}" = --package-build ]; then
    build_package
    exit 0
fi
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(plain valgrind asan)
jobs=$(( $(nproc) * 2 ))

echo "== CMake package: cargo build through cmake, install into build/prefix"
cargo build --quiet -p dps-emulator   # debug, as the Rust tests use it: it only serves them
build_package
rm -rf build/prefix
cmake --install build/cmake --prefix "$PWD/build/prefix" >/dev/null
# the links follow the SONAME build.rs set: .so -> .so.N -> .so.X.Y.Z
version=$(sed -n 's/^version = "\([0-9.]*\)"$/\1/p' Cargo.toml | head -n 1)
real=libprov_mqtt_transport.so.$version
soname=$(readelf -d "build/prefix/lib/$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libprov_mqtt_transport.so.${version%%.*}" ]
[ "$(readlink build/prefix/lib/libprov_mqtt_transport.so)" = "$soname" ]
[ "$(readlink "build/prefix/lib/$soname")" = "$real" ]
# as shipped: stripped, the debug info beside them, the .so pointing at its debug file
for f in "$real" libprov_mqtt_transport.a; do
    [ -s "build/prefix/lib/.debug/$f.debug" ] || { echo "no build/prefix/lib/.debug/$f.debug" >&2; exit 1; }
    if readelf -S "build/prefix/lib/$f" | grep -q '\.debug_'; then
        echo "build/prefix/lib/$f still carries debug sections" >&2
        exit 1
    fi
done
readelf -S "build/prefix/lib/$real" | grep -q '\.gnu_debuglink'
echo "installed: $(cd build/prefix && find . -type f -o -type l | sort | tr '\n' ' ')"
echo "sizes (bytes): $(cd build/prefix/lib && stat -c '%n %s' "$real" libprov_mqtt_transport.a .debug/* | tr '\n' ';')"
echo "hot-symbol order (cmake/hot-symbols.txt): $(scripts/hot-symbols.sh --count target/dist/libprov_mqtt_transport.so) (refresh with scripts/hot-symbols.sh after a rustc or dependency update)"

echo "== pkg-config: the C sample built with the installed .pc"
export PKG_CONFIG_PATH="$PWD/build/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror examples/c/prov_dev_sample.c \
    $(pkg-config --cflags --libs prov_mqtt_transport) -o build/prov_dev_sample_pc
# and statically: the archive plus the .pc's Libs.private
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror examples/c/prov_dev_sample.c \
    $(pkg-config --cflags prov_mqtt_transport) build/prefix/lib/libprov_mqtt_transport.a \
    $(pkg-config --static --libs-only-l prov_mqtt_transport | sed 's/-lprov_mqtt_transport//') -o build/prov_dev_sample_static
if ldd build/prov_dev_sample_static | grep -q libprov_mqtt_transport; then
    echo "build/prov_dev_sample_static should not need libprov_mqtt_transport.so" >&2
    exit 1
fi
strip -o build/prov_dev_sample_static.stripped build/prov_dev_sample_static
echo "the C sample linked statically: $(stat -c %s build/prov_dev_sample_static.stripped) bytes stripped"
echo "pkg-config prov_mqtt_transport $(pkg-config --modversion prov_mqtt_transport): OK (shared and static)"

echo "== the package refuses an SDK older than LTS_07_2019 in the same build (11-slot table)"
sdk=build/fake-sdk
for release in 2018 2019; do
    rm -rf "$sdk" && mkdir -p "$sdk/inc/azure_prov_client/internal"
    if [ $release = 2018 ]; then args="PROV_DEVICE_TRANSPORT_STATUS transport_status, void* user_ctx"
    else args="PROV_DEVICE_TRANSPORT_STATUS transport_status, uint32_t retry_interval, void* user_ctx"; fi
    echo "typedef void(*PROV_DEVICE_TRANSPORT_STATUS_CALLBACK)($args);" >"$sdk/inc/azure_prov_client/internal/prov_transport_private.h"
    cat >"$sdk/CMakeLists.txt" <<SDK
cmake_minimum_required(VERSION 3.16)
project(fake_sdk_app C)
add_library(prov_device_ll_client INTERFACE)
target_include_directories(prov_device_ll_client INTERFACE \${CMAKE_CURRENT_SOURCE_DIR}/inc)
find_package(prov_mqtt_transport CONFIG REQUIRED)
SDK
    if cmake -S "$sdk" -B "$sdk/build" -Dprov_mqtt_transport_DIR="$PWD/build/prefix/lib/cmake/prov_mqtt_transport" >"$sdk.log" 2>&1; then
        [ $release = 2019 ] || { echo "the package accepted a $release SDK" >&2; exit 1; }
    else
        [ $release = 2018 ] && grep -q "older than LTS_07_2019" "$sdk.log" || { cat "$sdk.log" >&2; exit 1; }
    fi
done
echo "an SDK with the 2018 status callback is refused at configure time; the 2019 one is accepted"

echo "== ctest/REQUIREMENTS.md names every C test, and every test it names exists"
tests=$(grep -ohE '^TEST\([A-Za-z0-9_]+\)' ctest/*.c | sed 's/TEST(\(.*\))/\1/' | sort -u)
named=$(grep -oE '`[A-Za-z0-9_]+`' ctest/REQUIREMENTS.md | tr -d '`' | sort -u)
missing=$(comm -23 <(echo "$tests") <(echo "$named"))
[ -z "$missing" ] || { echo "not in ctest/REQUIREMENTS.md: $missing" >&2; exit 1; }
for t in $(grep -oE '`(ut|args|abi|robustness|process|PROV|SRS)_[A-Za-z0-9_]+`' ctest/REQUIREMENTS.md | tr -d '`' | sort -u); do
    grep -qx "$t" <<<"$tests" || { echo "ctest/REQUIREMENTS.md names $t, which is not a test" >&2; exit 1; }
done
echo "$(wc -l <<<"$tests") C tests, all mapped"

# Each mode is configured and built first, then run. Valgrind is CPU-bound (memcheck runs the
# library 20-50 times slower) while the plain and ASan runs mostly wait on the emulator and on
# timers, so when valgrind runs with others it runs beside them at a lower CPU priority (nice 10):
# it takes the cycles they leave idle, and theirs stays close to what it is alone.
declare -A excludes
for mode in "${modes[@]}"; do
    case "$mode" in
    plain) flags=() exclude=() ;;
    valgrind) flags=(-DPMT_VALGRIND=ON) exclude=() ;;
    # The fork tests run plain and under valgrind, not under ASan: ASan's own allocator is not
    # fork-safe here (a child forked while the I/O thread allocates waits for ever on an
    # allocator lock copied held: gdb shows both of the child's threads in
    # SizeClassAllocator64::GetFromAllocator), which is the sanitizer's limit, not ours.
    asan) flags=(-DPMT_SANITIZE=ON) exclude=(-E '^process_(fork|daemon)_') ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    excludes[$mode]="${exclude[*]}"
    cmake -S ctest -B "build/ctest-$mode" -Dprov_mqtt_transport_DIR="$PWD/build/prefix/lib/cmake/prov_mqtt_transport" \
        -DDPS_EMULATOR="$PWD/target/debug/dps-emulator" "${flags[@]}" >/dev/null
    cmake --build "build/ctest-$mode" -- -s >/dev/null
done
run_mode() { # mode [nice]: runs it, leaves build/ctest-MODE.log and build/ctest-MODE.rc
    local mode=$1 rc=0
    # shellcheck disable=SC2086 # the exclude option and its pattern are two words
    ${2:+nice -n $2} ctest --test-dir "build/ctest-$mode" -j "$jobs" ${excludes[$mode]} --output-on-failure \
        >"build/ctest-$mode.log" 2>&1 || rc=$?
    echo "$rc" >"build/ctest-$mode.rc"
}
report_mode() { # mode: prints its summary, or its failures and fails
    echo "== C harness ($1)"
    if [ "$(cat "build/ctest-$1.rc")" != 0 ]; then
        grep -v ' Passed ' "build/ctest-$1.log"
        return 1
    fi
    grep -E 'tests passed|Total Test time' "build/ctest-$1.log"
}
valgrind_pid=
stop_valgrind() { [ -z "$valgrind_pid" ] || pkill -f "ctest --test-dir build/ctest-valgrind" 2>/dev/null || true; }
trap stop_valgrind EXIT
if [ ${#modes[@]} -gt 1 ] && [[ " ${modes[*]} " == *" valgrind "* ]]; then
    run_mode valgrind 10 &
    valgrind_pid=$!
fi
for mode in "${modes[@]}"; do
    [ -n "$valgrind_pid" ] && [ "$mode" = valgrind ] && continue
    run_mode "$mode"
    report_mode "$mode"
done
if [ -n "$valgrind_pid" ]; then
    wait "$valgrind_pid"
    valgrind_pid=
    report_mode valgrind
fi
