#!/usr/bin/env bash
# Size bench (issue 14, goal 2): the shipped artifacts as the CMake package builds and installs
# them (cargo's dist profile, `strip --strip-unneeded`), and the C sample linked statically
# against the archive (-O2), stripped, without and with --gc-sections (the README's static link line).
# Prints figures; never fails because a figure is large. benches/size-experiments.md has the
# table of what each lever changed.
#
#   benches/size.sh                         as the package builds it here (DT_RELR on: glibc >= 2.36)
#   PMT_PACK_RELATIVE_RELOCS=0 benches/size.sh  as it builds for glibc < 2.36
#   SIZE_NO_BUILD=1                         measure target/dist as it is
set -euo pipefail
cd "$(dirname "$0")/.."
TD=${CARGO_TARGET_DIR:-$PWD/target}
export PMT_PACK_RELATIVE_RELOCS=${PMT_PACK_RELATIVE_RELOCS:-1}
if [ -z "${SIZE_NO_BUILD:-}" ]; then
  cargo rustc --quiet --locked -p prov_mqtt_transport --lib --crate-type cdylib,staticlib --profile dist
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
strip --strip-unneeded -o "$out/lib.so" "$TD/dist/libprov_mqtt_transport.so"
echo "stripped libprov_mqtt_transport.so: $(stat -c %s "$out/lib.so") bytes (goal <= 1 500 000)"
echo "  linker: $(readelf -p .comment "$out/lib.so" | sed -n 's/.*\(Linker: [^(]*\).*/\1/p' | head -n 1)"
echo "  DT_RELR: $(readelf -d "$out/lib.so" | grep -q '(RELR)' && echo yes || echo no)"
echo "  sections over 10 000 bytes:"
size -A "$out/lib.so" | awk '$2 > 10000 && $1 ~ /^\./ { printf "    %-20s %9d\n", $1, $2 }'
for gc in "" "-Wl,--gc-sections"; do
  # shellcheck disable=SC2086
  cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Iexamples/c examples/c/prov_dev_sample.c $gc \
    "$TD/dist/libprov_mqtt_transport.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o "$out/sample"
  strip "$out/sample"
  echo "C sample linked statically${gc:+ with $gc}, stripped: $(stat -c %s "$out/sample") bytes (goal <= 1 600 000)"
done
