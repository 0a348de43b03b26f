#!/usr/bin/env bash
# Checks the shared library exports exactly the SDK's entry points, carries its SONAME, and that
# the committed header is what build.rs generates from the code.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=${1:-target/debug/libprov_mqtt_transport.so}
want=scripts/exported-symbols.txt
got=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort)
if ! diff -u "$want" <(printf '%s\n' "$got"); then
    echo "check-abi: the exported dynamic symbols of $lib differ from $want" >&2
    exit 1
fi
# build.rs derives the SONAME from the crate's major version; this says what it must be.
version=$(sed -n 's/^version = "\([0-9.]*\)"$/\1/p' Cargo.toml | head -n 1)
want_soname="libprov_mqtt_transport.so.${version%%.*}"
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" != "$want_soname" ]; then
    echo "check-abi: SONAME is '$soname', expected $want_soname (crate version $version)" >&2
    exit 1
fi
if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --exit-code -- include/; then
    echo "check-abi: include/prov_mqtt_transport.h drifted from the code: commit the regenerated header" >&2
    exit 1
fi
echo "check-abi: $(wc -l < "$want") exported symbols as listed, SONAME $soname, header up to date"
