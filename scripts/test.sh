#!/usr/bin/env bash
# Every test: formatting, lints, the ABI checks (exported symbols, SONAME, header drift), the
# Rust unit, boundary and end-to-end tests, the emulator's tests, the C sample built with
# -Werror, the C harness (ctest/) against the installed CMake package (plain, under valgrind,
# with ASan+UBSan), and the real Python and Node DPS clients against the emulator. Installs what
# it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v nm >/dev/null || need_apt+=(binutils)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v tinyproxy >/dev/null || need_apt+=(tinyproxy)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v openssl >/dev/null || need_apt+=(openssl)       # TLS 1.0/1.1-only servers
command -v mosquitto >/dev/null || need_apt+=(mosquitto)   # MQTT-layer interop
command -v ip >/dev/null || need_apt+=(iproute2)           # network namespaces
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "test: installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if command -v rustup >/dev/null; then rustup component add rustfmt clippy >/dev/null 2>&1 || true; fi

# Everything the tests need is installed now: a test that would skip for lack of it fails instead
# (testkit::require_tool / require_root; without this variable they print "skipped: ..." and pass).
export PROV_TEST_REQUIRE_ALL=1
# The end-to-end tests spend their time waiting on the emulator and on timers, not on the CPU:
# 16 at a time take a sixth of the time 2 (one per core) do.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-16}"
echo "test: $(nproc) cores, $(df -h --output=avail . | tail -n 1 | tr -d ' ') of disk free"

# Each phase prints its name, then its duration when the next one starts (or the run ends).
started=$SECONDS phase_name="" phase_started=$SECONDS
end_phase() {
    [ -n "$phase_name" ] && echo "== $phase_name ($1 $((SECONDS - phase_started)) s)"
    phase_name=""
}
phase() {
    end_phase took
    phase_name="$1" phase_started=$SECONDS
    echo "== $1"
}
finish() {
    local rc=$?
    stop_background
    if [ "$rc" = 0 ]; then end_phase took; echo "== all phases passed in $((SECONDS - started)) s"
    else end_phase "FAILED after"; echo "== failed after $((SECONDS - started)) s in total"; fi
}
trap finish EXIT

# Work no phase needs until later starts now, each job in a process group of its own: the peer
# SDKs and matplotlib (mostly downloads), and cargo-fuzz with the fuzz targets at the lowest CPU
# priority, so that the build takes only the cycles the phases leave idle (their tests mostly
# wait). The phase that needs a job waits for it (`await`); a failed job fails that phase.
mkdir -p build
declare -A bg_pid
background() { # name command...: runs it, output in build/background-NAME.log
    local name=$1
    shift
    setsid "$@" >"build/background-$name.log" 2>&1 &
    bg_pid[$name]=$!
}
await() { # name: waits for the job at full priority; its output goes to the phase's
    local pid=${bg_pid[$1]} rc=0
    renice -n 0 -g "$pid" >/dev/null 2>&1 || true
    wait "$pid" || rc=$?
    cat "build/background-$1.log"
    [ "$rc" = 0 ] || { echo "test: the background job $1 failed ($rc)"; return 1; }
}
stop_background() {
    for pid in "${bg_pid[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
}
background peers scripts/install-peers.sh --bench
background fuzz-build nice -n 19 env FUZZ_PROFILE=dev scripts/fuzz-smoke.sh --build-only

phase "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

phase "ABI: exported symbols, SONAME, generated header"
cargo build -p prov_mqtt_transport
scripts/check-abi.sh target/debug/libprov_mqtt_transport.so
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pedantic -Iinclude examples/c/prov_dev_sample.c \
    -Ltarget/debug -lprov_mqtt_transport -o target/debug/prov_dev_sample
echo "C sample builds with -Wall -Wextra -Werror -pedantic"

phase "Rust tests (unit, C boundary, end-to-end against the emulator; emulator tests)"
cargo test --workspace

phase "the C harness: CMake package, pkg-config, ctest (plain, valgrind, ASan+UBSan)"
scripts/ctest.sh plain valgrind asan

phase "the CMake package's cross-build path (a toolchain file naming the host's triple)"
scripts/cross-check.sh

phase "1,000 create/open/register/close/destroy cycles: RSS, fds and threads stay flat"
scripts/cycles.sh

phase "chaos, short run: 300 registrations through a faulty relay, each ends once within its budget"
REGISTRATIONS=300 scripts/chaos.sh

phase "the real Python and Node DPS clients against the emulator"
await peers
dps-emulator/fidelity/run.sh

phase "fuzz smoke run (every cargo-fuzz target briefly, unoptimised; long runs: scripts/fuzz-smoke.sh)"
await fuzz-build
FUZZ_PROFILE=dev FUZZ_SECONDS=10 scripts/fuzz-smoke.sh

phase "bench smoke run (tiny counts: proves the bench runs; figures are not asserted)"
scripts/bench.sh --smoke
