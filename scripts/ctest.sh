#!/usr/bin/env bash
# The C harness, as a customer consumes the library: build and install the CMake package into
# build/prefix, check the pkg-config module, then build ctest/ against the installed package and
# run it three times: plain, under valgrind memcheck (errors or definite leaks fail), and with
# AddressSanitizer + UndefinedBehaviorSanitizer. Usage: scripts/ctest.sh [plain|valgrind|asan]...
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(plain valgrind asan)
jobs=$(( $(nproc) * 2 ))

echo "== CMake package: cargo build through cmake, install into build/prefix"
cargo build --release --quiet -p dps-emulator
cmake -S cmake -B build/cmake -DPMT_CARGO_TARGET_DIR="$PWD/target" >/dev/null
cmake --build build/cmake
rm -rf build/prefix
cmake --install build/cmake --prefix "$PWD/build/prefix" >/dev/null
readelf -d build/prefix/lib/libprov_mqtt_transport.so.0.1.0 | grep -q 'SONAME.*\[libprov_mqtt_transport.so.0\]'
[ "$(readlink build/prefix/lib/libprov_mqtt_transport.so)" = libprov_mqtt_transport.so.0 ]
[ "$(readlink build/prefix/lib/libprov_mqtt_transport.so.0)" = libprov_mqtt_transport.so.0.1.0 ]
echo "installed: $(cd build/prefix && find . -type f -o -type l | sort | tr '\n' ' ')"

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
echo "pkg-config prov_mqtt_transport $(pkg-config --modversion prov_mqtt_transport): OK (shared and static)"

echo "== ctest/REQUIREMENTS.md names every C test, and every test it names exists"
tests=$(grep -ohE '^TEST\([A-Za-z0-9_]+\)' ctest/*.c | sed 's/TEST(\(.*\))/\1/' | sort -u)
named=$(grep -oE '`[A-Za-z0-9_]+`' ctest/REQUIREMENTS.md | tr -d '`' | sort -u)
missing=$(comm -23 <(echo "$tests") <(echo "$named"))
[ -z "$missing" ] || { echo "not in ctest/REQUIREMENTS.md: $missing" >&2; exit 1; }
for t in $(grep -oE '`(ut|abi|robustness|process|PROV|SRS)_[A-Za-z0-9_]+`' ctest/REQUIREMENTS.md | tr -d '`' | sort -u); do
    grep -qx "$t" <<<"$tests" || { echo "ctest/REQUIREMENTS.md names $t, which is not a test" >&2; exit 1; }
done
echo "$(wc -l <<<"$tests") C tests, all mapped"

for mode in "${modes[@]}"; do
    case "$mode" in
    plain) flags=() ;;
    valgrind) flags=(-DPMT_VALGRIND=ON) ;;
    asan) flags=(-DPMT_SANITIZE=ON) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    echo "== C harness ($mode)"
    cmake -S ctest -B "build/ctest-$mode" -Dprov_mqtt_transport_DIR="$PWD/build/prefix/lib/cmake/prov_mqtt_transport" \
        -DDPS_EMULATOR="$PWD/target/release/dps-emulator" "${flags[@]}" >/dev/null
    cmake --build "build/ctest-$mode" -- -s >/dev/null
    if ! ctest --test-dir "build/ctest-$mode" -j "$jobs" --output-on-failure >"build/ctest-$mode.log" 2>&1; then
        grep -v ' Passed ' "build/ctest-$mode.log"
        exit 1
    fi
    grep -E 'tests passed|Total Test time' "build/ctest-$mode.log"
done
