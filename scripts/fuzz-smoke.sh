#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets in fuzz/: builds them all, then runs each for
# FUZZ_SECONDS (default 20) from the committed seeds in fuzz/seeds/<target>, into a throw-away
# corpus. Fails on any crash, panic, leak or timeout libFuzzer reports (the reproducer is kept
# in fuzz/artifacts/<target>/). Nine targets x 20 s = 3 minutes after the build.
#
# cargo-fuzz needs nightly flags (-Zsanitizer); on a stable toolchain RUSTC_BOOTSTRAP=1 allows
# them. Long runs: FUZZ_SECONDS=600 scripts/fuzz-smoke.sh (or one target: ... reply_topic).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cargo fuzz build
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
bin=target/x86_64-unknown-linux-gnu/release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "artifacts/$t" "seeds/$t"
    echo "== fuzz $t for ${seconds} s"
    if ! "$bin/$t" "$scratch/$t" "seeds/$t" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz-smoke: $t FAILED (reproducer in fuzz/artifacts/$t/)"
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/$t.log" || tail -n 3 "$scratch/$t.log"
done
echo "fuzz-smoke: ${#targets[@]} targets, no finding"
