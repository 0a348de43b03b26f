#!/usr/bin/env bash
# Leak check: CYCLES (default 1000) create -> open -> register -> close -> destroy cycles, each a
# complete registration (MQTT/WSS x X.509/symmetric key, alternating) against the DPS emulator
# running as its own process; VmRSS, descriptors and threads are sampled every 100 cycles and
# the run fails if RSS grows more than MAX_GROWTH_KB (default 8192) from cycle 100 to the end,
# or if descriptors or threads grow at all. About 10 s for 1,000 cycles in a debug build.
# PROFILE=release for the optimized build.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${CYCLES:-1000}"
profile="${PROFILE:-debug}"
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p dps-emulator -p prov_mqtt_transport --bin dps-emulator --example cycles
dir="${CARGO_TARGET_DIR:-target}/$profile"
DPS_EMULATOR="$dir/dps-emulator" "$dir/examples/cycles" "$cycles" --max-growth-kb "${MAX_GROWTH_KB:-8192}"
