#!/usr/bin/env bash
# Benchmarks (issue 6): round trips, registration time under real latency, set-up cost, idle
# dowork cost, fleet scale and footprint, side by side with the real Python (azure-iot-device)
# and Node (azure-iot-provisioning-device-mqtt) DPS clients; (issue 14) the memory the library
# adds to a C process (benches/memory.sh) and the I/O thread's idle wake-ups (benches/wakeups.py).
# Writes BENCHMARKS.md and PNG plots in docs/bench/. Prints figures; never fails because something
# is slow.
#
#   scripts/bench.sh            full run (~14 min on 2 cores once built: 6 of them the 60 s
#                               wake-up windows)
#   scripts/bench.sh --smoke    debug builds, tiny counts (< 2 min once built), output under
#                               $CARGO_TARGET_DIR/bench-smoke/ (leaves BENCHMARKS.md alone):
#                               proves the bench still runs (CI)
#   BENCH_KEEP=1 scripts/bench.sh   keeps the work directory (certificates, timelines, emulator log)
#
# Needs root (network namespaces, TUN devices, strace), cargo, cc, python3 (venv), node/npm.
# Installs what is missing: iproute2, strace and GNU time (apt), matplotlib into benches/.venv, the peer
# SDKs as dps-emulator/fidelity/run.sh does (fidelity/.venv, fidelity/node/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=
case "${1:-}" in
  --smoke) SMOKE=--smoke ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces, TUN devices, strace)" >&2; exit 1; }

# --- tools --------------------------------------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v strace >/dev/null || missing+=(strace)
[ -x /usr/bin/time ] || missing+=(time)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }

VENV=benches/.venv
FID=dps-emulator/fidelity
scripts/install-peers.sh --bench

# --- builds -------------------------------------------------------------------------------------
TD=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -n "$SMOKE" ]; then
  # debug builds (what scripts/test.sh builds anyway): the smoke run proves the bench runs, its
  # figures are not quoted
  echo "== building the emulator, the bench driver and the library (debug)"
  cargo build --quiet -p dps-emulator
  cargo build --quiet -p prov_mqtt_transport --lib --example bench
  BIN=$TD/debug
  SO=$TD/debug/libprov_mqtt_transport.so
  OUT=$TD/bench-smoke
else
  echo "== building the emulator and the bench driver (release)"
  cargo build --release --quiet -p dps-emulator
  cargo build --release --quiet -p prov_mqtt_transport --example bench
  echo "== building the shipped library: fat LTO, stripped"
  # a target dir of its own, so this build and the ordinary release build do not overwrite each other
  cargo rustc --quiet --release --lib -p prov_mqtt_transport --crate-type cdylib,staticlib \
    --config 'profile.release.lto="fat"' --target-dir "$TD/bench-lto"
  BIN=$TD/release
  SO=$TD/bench-lto/release/libprov_mqtt_transport.so
  OUT=$TD/bench-out
fi
mkdir -p "$OUT/lib"
cp "$SO" "$OUT/lib/libprov_mqtt_transport.so"
[ -n "$SMOKE" ] || strip "$OUT/lib/libprov_mqtt_transport.so"
ln -sf libprov_mqtt_transport.so "$OUT/lib/libprov_mqtt_transport.so.0"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -Iinclude examples/c/prov_dev_sample.c \
  -L"$OUT/lib" -lprov_mqtt_transport -Wl,-rpath,"$OUT/lib" -rdynamic -o "$OUT/prov_dev_sample"

# --- run ----------------------------------------------------------------------------------------
if [ -n "$SMOKE" ]; then
  REPORT=$OUT/BENCHMARKS.md
  PLOTS=$OUT/plots
  SIZE=()
else
  REPORT=$ROOT/BENCHMARKS.md
  PLOTS=$ROOT/docs/bench
  SIZE=(--so "$OUT/lib/libprov_mqtt_transport.so")
fi
echo "== running the benchmarks${SMOKE:+ (smoke)}"
"$VENV/bin/python" benches/run.py $SMOKE \
  --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --cdriver "$OUT/prov_dev_sample" "${SIZE[@]}" \
  --py "$ROOT/$FID/.venv/bin/python" --node-modules "$ROOT/$FID/node/node_modules" \
  --out "$REPORT" --plots "$PLOTS" --json "$OUT/results.json"
echo "== wrote $REPORT"

# --- memory and idle wake-ups (issue 14) -----------------------------------------------------------
# Printed here; in a full run also appended to the report as sections 7 and 8.
if [ -n "$SMOKE" ]; then
  benches/memory.sh --smoke | grep -v '^JSON'
  for t in "" --ws; do
    python3 benches/wakeups.py $t --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1,20 --window-s 2 |
      grep -v '^JSON'
  done
else
  MEMORY_LIB="$OUT/lib/libprov_mqtt_transport.so" benches/memory.sh >"$OUT/memory.txt"
  {
    python3 benches/wakeups.py --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1,1000 --window-s 60
    python3 benches/wakeups.py --ws --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1000 --window-s 60
  } >"$OUT/wakeups.txt"
  {
    echo
    echo "## 7. Memory the library adds to a C process registering one device"
    echo
    echo "\`benches/memory.sh\` (benches/memory.c: examples/c/prov_dev_sample.c with /proc/self/smaps read before the first \`create\`, every millisecond during the registration, and 300 ms after \`destroy\`), against the stripped fat-LTO library above; localhost, retry-after 1, one poll; KB."
    echo
    echo '```'
    grep -v '^JSON' "$OUT/memory.txt"
    echo '```'
    echo
    echo "## 8. Idle cost: the I/O thread's wake-ups"
    echo
    echo "\`benches/wakeups.py\` (\`bench wakeups\`): N registrations waiting out a retry-after of 300 s with \`dowork\` on every handle each millisecond, then every handle destroyed; the I/O thread's context switches (/proc/self/task/TID/status) and syscalls (\`strace -c -p TID\`; the one \`epoll_wait\` is the call strace's attach restarted) over 60 s."
    echo
    echo '```'
    grep -v '^JSON' "$OUT/wakeups.txt"
    echo '```'
  } >>"$REPORT"
fi
