#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets in fuzz/: builds them all, then runs each for
# FUZZ_SECONDS (default 20) from the committed seeds in fuzz/seeds/<target>, into a throw-away
# corpus, FUZZ_JOBS (default: the number of cores) targets at a time. Fails on any crash, panic,
# leak or timeout libFuzzer reports (the reproducer is kept in fuzz/artifacts/<target>/).
#
#   scripts/fuzz-smoke.sh [TARGET...]      build (release) and run
#   scripts/fuzz-smoke.sh --build-only     build only (scripts/test.sh does this in the background)
#   FUZZ_PROFILE=dev                        unoptimised build: about half the build time, a tenth
#                                           of the executions per second (enough for a smoke run)
#
# cargo-fuzz needs nightly flags (-Zsanitizer); on a stable toolchain RUSTC_BOOTSTRAP=1 allows
# them. Long runs: FUZZ_SECONDS=600 scripts/fuzz-smoke.sh (or one target: ... reply_topic).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-$(nproc)}"
export RUSTC_BOOTSTRAP=1
build_only=
[ "${1:-}" = --build-only ] && { build_only=1; shift; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    # a debug build of the tool: it only drives cargo, and builds in half the time
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --debug --quiet
fi

case "${FUZZ_PROFILE:-release}" in
release) profile=(--release) bin=target/x86_64-unknown-linux-gnu/release ;;
dev) profile=(--dev) bin=target/x86_64-unknown-linux-gnu/debug ;;
*) echo "fuzz-smoke: FUZZ_PROFILE is release or dev" >&2; exit 2 ;;
esac
cargo fuzz build "${profile[@]}"
[ -z "$build_only" ] || exit 0

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
run() { # target: runs it, leaves $scratch/$1.rc
    local t=$1
    mkdir -p "$scratch/$t" "artifacts/$t" "seeds/$t"
    local rc=0
    "$bin/$t" "$scratch/$t" "seeds/$t" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$scratch/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$scratch/$t.rc"
}
echo "== fuzz ${#targets[@]} targets for ${seconds} s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
    run "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
failed=0
for t in "${targets[@]}"; do
    if [ "$(cat "$scratch/$t.rc")" != 0 ]; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz-smoke: $t FAILED (reproducer in fuzz/artifacts/$t/)"
        failed=1
    else
        echo "$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/$t.log" || tail -n 1 "$scratch/$t.log")"
    fi
done
[ "$failed" = 0 ] || exit 1
echo "fuzz-smoke: ${#targets[@]} targets, no finding"
