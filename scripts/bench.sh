#!/usr/bin/env bash
# Benchmarks (issue 6): round trips, registration time under real latency, set-up cost, idle
# dowork cost, fleet scale and footprint, side by side with the real Python (azure-iot-device)
# and Node (azure-iot-provisioning-device-mqtt) DPS clients; (issue 14) the memory the library
# adds to a C process (benches/memory.sh) and the I/O thread's idle wake-ups (benches/wakeups.py).
# Writes BENCHMARKS.md and PNG plots in docs/bench/. Prints figures; never fails because something
# is slow.
#
#   scripts/bench.sh            full run (~20 min on 2 cores once built: 6 of them the 60 s
#                               wake-up windows, 2 the fleet of 20,000)
#   BENCH_ONLY=5,7 scripts/bench.sh   only some sections (1-6: benches/run.py's, 7 memory,
#                               8 wake-ups); the report then has only those
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
[ -n "$SMOKE" ] || command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
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
  OUT=$TD/bench-smoke
  LIB=$OUT/lib
  SO=$LIB/libprov_mqtt_transport.so
  mkdir -p "$LIB"
  cp "$TD/debug/libprov_mqtt_transport.so" "$SO"
  ln -sf libprov_mqtt_transport.so "$LIB/libprov_mqtt_transport.so.0"
else
  echo "== building the emulator and the bench driver (release)"
  cargo build --release --quiet -p dps-emulator
  cargo build --release --quiet -p prov_mqtt_transport --example bench
  BIN=$TD/release
  OUT=$TD/bench-out
  # the library as a user installs it: the CMake package (cargo's dist profile, fat LTO; stripped at
  # install), in the build directory scripts/ctest.sh uses, so a test run's build is reused
  echo "== building and installing the CMake package (the shipped library)"
  cmake -S cmake -B build/cmake -DPMT_CARGO_TARGET_DIR="$TD" >/dev/null
  cmake --build build/cmake >/dev/null
  rm -rf "$OUT/prefix"
  cmake --install build/cmake --prefix "$OUT/prefix" >/dev/null
  LIB=$OUT/prefix/lib
  SO=$LIB/libprov_mqtt_transport.so
  # and the C sample linked statically against the installed archive, stripped (its size, section 6)
  # shellcheck disable=SC2046
  # (scripts/ctest.sh's command, which checks the package)
  export PKG_CONFIG_PATH="$LIB/pkgconfig"
  cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror examples/c/prov_dev_sample.c \
    $(pkg-config --cflags prov_mqtt_transport) "$LIB/libprov_mqtt_transport.a" \
    $(pkg-config --static --libs-only-l prov_mqtt_transport | sed 's/-lprov_mqtt_transport//') -o "$OUT/prov_dev_sample_static"
  strip "$OUT/prov_dev_sample_static"
fi
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -Iinclude examples/c/prov_dev_sample.c \
  -L"$LIB" -lprov_mqtt_transport -Wl,-rpath,"$LIB" -rdynamic -o "$OUT/prov_dev_sample"

# --- run ----------------------------------------------------------------------------------------
ONLY=${BENCH_ONLY:-1,2,3,4,5,6,7,8}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
EXTRA=()
if [ -n "$SMOKE" ]; then
  REPORT=$OUT/BENCHMARKS.md
  PLOTS=$OUT/plots
  # the memory and wake-up benches' smoke runs: printed, not part of the report
  benches/memory.sh --smoke | grep -v '^JSON'
  for t in "" --ws; do
    python3 benches/wakeups.py $t --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1,20 --window-s 2 |
      grep -v '^JSON'
  done
else
  REPORT=$ROOT/BENCHMARKS.md
  PLOTS=$ROOT/docs/bench
  EXTRA=(--so "$SO" --static-sample "$OUT/prov_dev_sample_static")
  if want 7; then
    echo "== memory the library adds (section 7)"
    MEMORY_LIB="$SO" benches/memory.sh >"$OUT/memory.txt"
    EXTRA+=(--memory "$OUT/memory.txt")
  fi
  if want 8; then
    echo "== the I/O thread's wake-ups (section 8)"
    python3 benches/wakeups.py --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1,1000 --window-s 60 \
      >"$OUT/wakeups-mqtt.txt"
    python3 benches/wakeups.py --ws --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --n 1000 --window-s 60 \
      >"$OUT/wakeups-ws.txt"
    EXTRA+=(--wakeups "$OUT/wakeups-mqtt.txt" --wakeups "$OUT/wakeups-ws.txt")
  fi
fi
sections=$(tr ',' '\n' <<<"$ONLY" | grep -E '^[1-6]$' | paste -sd, || true)
echo "== running the benchmarks${SMOKE:+ (smoke)}"
"$VENV/bin/python" benches/run.py $SMOKE --only "${sections:-none}" \
  --emu "$BIN/dps-emulator" --bench "$BIN/examples/bench" --cdriver "$OUT/prov_dev_sample" "${EXTRA[@]}" \
  --py "$ROOT/$FID/.venv/bin/python" --node-modules "$ROOT/$FID/node/node_modules" \
  --out "$REPORT" --plots "$PLOTS" --json "$OUT/results.json"
echo "== wrote $REPORT"
