#!/usr/bin/env bash
# Every test: formatting, lints, the ABI checks (exported symbols, SONAME, header drift), the
# Rust unit, boundary and end-to-end tests, the emulator's tests, the C sample built with
# -Werror, the C harness (ctest/) against the installed CMake package (plain, under valgrind,
# with ASan+UBSan), the cross-build path, the leak cycles, a chaos run, the real Python and Node
# DPS clients against the emulator, and smoke runs of the fuzz targets and the bench. Installs
# what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the first phases (cargo) need is installed now; the rest in the background while they run
# (the "apt" job below: the phases that need it wait for it).
apt_install() { # packages...
    [ $# -gt 0 ] || return 0
    echo "test: installing $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
export -f apt_install
need_now=()
command -v cc >/dev/null || need_now+=(gcc)
command -v nm >/dev/null || need_now+=(binutils)
apt_install "${need_now[@]}"
need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v tinyproxy >/dev/null || need_apt+=(tinyproxy)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v openssl >/dev/null || need_apt+=(openssl)       # TLS 1.0/1.1-only servers
command -v mosquitto >/dev/null || need_apt+=(mosquitto)   # MQTT-layer interop
command -v ip >/dev/null || need_apt+=(iproute2)           # network namespaces
command -v strace >/dev/null || need_apt+=(strace)         # the bench's syscall counts
[ -x /usr/bin/time ] || need_apt+=(time)                   # the bench's peak RSS
if command -v rustup >/dev/null; then rustup component add rustfmt clippy >/dev/null 2>&1 || true; fi

# Everything the tests need is installed before they run: a test that would skip for lack of it
# fails instead (testkit::require_tool / require_root; without this variable they print
# "skipped: ..." and pass).
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
    if [ "$rc" = 0 ]; then end_phase took; else end_phase "FAILED after"; fi
    echo "test: $(df -h --output=avail . | tail -n 1 | tr -d ' ') of disk free at the end"
    if [ "$rc" = 0 ]; then echo "== all phases passed in $((SECONDS - started)) s"
    else echo "== failed after $((SECONDS - started)) s in total"; fi
}
trap finish EXIT

# Work no phase needs until later starts now, in process groups of their own: the apt packages;
# after them the peer SDKs and matplotlib (mostly downloads), and a queue of builds at the lowest
# CPU priority, so that they take only the cycles the phases leave idle (cargo's builds have
# serial stretches, the tests mostly wait): the shipped package (fat LTO, its own cargo profile),
# the cross-build check (its own target directory), cargo-fuzz and the fuzz targets, in the order
# the phases need them. A phase that needs one waits for it (`await`, which lifts the queue to
# normal priority until then) and shows its output; a failed one fails that phase.
mkdir -p build
rm -f build/background-*
step() { # name command...: runs it, output in build/background-NAME.log, status in .rc
    "${@:2}" >"build/background-$1.log" 2>&1
    echo $? >"build/background-$1.rc"
}
export -f step
setsid bash -c 'step apt apt_install "$@"' apt "${need_apt[@]}" &
apt_pid=$!
after_apt='until [ -f build/background-apt.rc ]; do sleep 0.5; done;'
setsid bash -c "$after_apt step peers scripts/install-peers.sh --bench" &
peers_pid=$!
setsid nice -n 19 bash -c "$after_apt"' step package scripts/ctest.sh --package-build
    step cross-check scripts/cross-check.sh
    step fuzz-build env FUZZ_PROFILE=dev scripts/fuzz-smoke.sh --build-only' &
queue_pid=$!
# With autogroup scheduling (Linux's default), a new session is a scheduling group of its own and
# nice counts only inside it: the group's own nice value is what ranks it against the phases.
priority() { # nice value for the queue
    renice -n "$1" -g "$queue_pid" >/dev/null 2>&1 || true
    echo "$1" 2>/dev/null >"/proc/$queue_pid/autogroup" || true
}
priority 19
await() { # name: waits for it, the queue at normal priority meanwhile; shows its output
    priority 0
    until [ -f "build/background-$1.rc" ]; do sleep 0.5; done
    priority 19
    cat "build/background-$1.log"
    [ "$(cat "build/background-$1.rc")" = 0 ] || { echo "test: $1 (run in the background) failed"; return 1; }
}
stop_background() {
    local pid
    for pid in ${apt_pid:-} ${peers_pid:-} ${queue_pid:-}; do kill -- "-$pid" 2>/dev/null || true; done
}

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
await apt
cargo test --workspace

phase "the C harness: CMake package, pkg-config, ctest (plain, valgrind, ASan+UBSan)"
await package
scripts/ctest.sh plain valgrind asan

phase "the CMake package's cross-build path (a toolchain file naming the host's triple)"
await cross-check

phase "1,000 create/open/register/close/destroy cycles: RSS, fds and threads stay flat"
scripts/cycles.sh

phase "chaos, short run: 300 registrations through a faulty relay, each ends once within its budget"
REGISTRATIONS=300 scripts/chaos.sh

# The last three check nothing by the clock (the fidelity clients' timeouts are in tens of
# seconds, the bench's figures are not asserted, the fuzz runs last a fixed time), so they run
# side by side, the fuzz runs once the queue has built their targets.
phase "side by side: the real Python and Node DPS clients against the emulator; fuzz smoke (each target 10 s, unoptimised; long runs: scripts/fuzz-smoke.sh); bench smoke (tiny counts: proves the bench runs, figures not asserted)"
await peers
fuzz_smoke() {
    await fuzz-build
    FUZZ_PROFILE=dev FUZZ_SECONDS=10 FUZZ_JOBS=2 scripts/fuzz-smoke.sh
}
side_pids=() side_names=()
side() { # name command...: starts it, output in build/side-NAME.log
    local name=$1
    shift
    (
        begun=$SECONDS
        rc=0
        "$@" >"build/side-$name.log" 2>&1 || rc=$?
        echo "$rc $((SECONDS - begun))" >"build/side-$name.rc"
        exit "$rc"
    ) &
    side_pids+=($!) side_names+=("$name")
}
side fidelity dps-emulator/fidelity/run.sh
side fuzz fuzz_smoke
side bench scripts/bench.sh --smoke
failed=()
for i in "${!side_pids[@]}"; do
    wait "${side_pids[$i]}" || failed+=("${side_names[$i]}")
done
for name in "${side_names[@]}"; do
    read -r rc took <"build/side-$name.rc"
    echo "== $name (exit $rc, $took s)"
    cat "build/side-$name.log"
done
[ ${#failed[@]} = 0 ] || { echo "test: failed side by side: ${failed[*]}"; exit 1; }
