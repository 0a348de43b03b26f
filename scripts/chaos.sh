#!/usr/bin/env bash
# The chaos run (examples/chaos.rs): REGISTRATIONS (default 2000) registrations, 50 at a time,
# MQTT and WSS alternating, through a loopback relay that drops, resets (also during TLS),
# black-holes, delays or splits into 1-byte writes each connection at random, against the DPS
# emulator (its own process) with 429/5xx storms, silence and slow replies. Fails on any
# registration that does not end exactly once within its budget, a callback after destroy, or
# descriptors, threads or RSS (MAX_GROWTH_MB, default 30) not flat at the end. About 4.5 min for
# 2,000 in a debug build; REGISTRATIONS=300 (the test command's short run) takes under a minute.
# SEED=N for another draw; PROFILE=release for the optimized build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-debug}"
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p dps-emulator -p prov_mqtt_transport --bin dps-emulator --example chaos
dir="${CARGO_TARGET_DIR:-target}/$profile"
DPS_EMULATOR="$dir/dps-emulator" "$dir/examples/chaos" --registrations "${REGISTRATIONS:-2000}" \
    --parallel 50 --seed "${SEED:-24301}" --max-growth-mb "${MAX_GROWTH_MB:-30}"
