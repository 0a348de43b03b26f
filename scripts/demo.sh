#!/usr/bin/env bash
# The demo: starts the local DPS emulator, builds the C sample against libprov_mqtt_transport.so,
# and registers devices over MQTT/TLS and MQTT/WSS, with an X.509 certificate chain and with a
# symmetric key. Prints the assigned hub of each.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "demo: cargo is needed (https://rustup.rs)" >&2; exit 1; }
if ! command -v cc >/dev/null; then
    echo "demo: installing gcc"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null \
        || { echo "demo: a C compiler is needed (apt-get install gcc)" >&2; exit 1; }
fi

echo "== building the library and the emulator (release; a few minutes the first time)"
cargo build --release -p prov_mqtt_transport -p dps-emulator
lib=target/release
# programs load the library by its SONAME (libprov_mqtt_transport.so.N), which plain cargo does
# not create: the CMake package's build tree and install have it (README, "Loading")
soname=$(readelf -d "$lib/libprov_mqtt_transport.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
ln -sf libprov_mqtt_transport.so "$lib/$soname"

work=$(mktemp -d)
emu_pid=
cleanup() { [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

scope=0ne00000000
key=$(printf 'demo-symmetric-key-for-the-emulator' | base64)
"$lib/dps-emulator" certs --out "$work/certs" --device demo-x509 >/dev/null
"$lib/dps-emulator" serve --mqtt-port 0 --ws-port 0 --scope "$scope" --certs "$work/certs" \
    --symmetric-key "demo-sym=$key" --timeline "$work/timeline.jsonl" >"$work/emulator.out" 2>"$work/emulator.err" &
emu_pid=$!
for _ in $(seq 100); do grep -q "listening" "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
line=$(grep "listening" "$work/emulator.out") || { cat "$work/emulator.err" >&2; exit 1; }
echo "== $line"
mqtt_port=$(sed -n 's/.*mqtt=[^ ]*:\([0-9]*\).*/\1/p' <<<"$line")
ws_port=$(sed -n 's/.*ws=[^ ]*:\([0-9]*\).*/\1/p' <<<"$line")

echo "== building the C sample"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Iinclude examples/c/prov_dev_sample.c \
    -L"$lib" -lprov_mqtt_transport -Wl,-rpath,"$PWD/$lib" -rdynamic -o "$work/prov_dev_sample"

token=$("$lib/dps-emulator" sas --scope "$scope" --registration-id demo-sym --key "$key")
x509=(--registration-id demo-x509 --cert "$work/certs/device-demo-x509.pem" --key "$work/certs/device-demo-x509-key.pem")
sym=(--registration-id demo-sym --sas-token "$token")
common=(--scope "$scope" --trusted-ca "$work/certs/root-ca.pem")

echo "== X.509 over MQTT/TLS";       "$work/prov_dev_sample" --uri "localhost:$mqtt_port" "${common[@]}" "${x509[@]}"
echo "== X.509 over MQTT/WSS";       "$work/prov_dev_sample" --ws --uri "localhost:$ws_port" "${common[@]}" "${x509[@]}"
echo "== symmetric key over MQTT/TLS"; "$work/prov_dev_sample" --uri "localhost:$mqtt_port" "${common[@]}" "${sym[@]}"
echo "== symmetric key over MQTT/WSS"; "$work/prov_dev_sample" --ws --uri "localhost:$ws_port" "${common[@]}" "${sym[@]}"
if command -v openssl >/dev/null; then
    echo "== certificate issuance: a CSR for demo-x509, then X.509 with the issued certificate"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/issued-key.pem" \
        -subj /CN=demo-x509 -outform DER 2>/dev/null | base64 -w0 >"$work/demo-x509.csr"
    "$work/prov_dev_sample" --uri "localhost:$mqtt_port" "${common[@]}" "${x509[@]}" \
        --csr "$work/demo-x509.csr" --issued-chain "$work/issued-chain.pem"
    openssl x509 -in "$work/issued-chain.pem" -noout -subject -issuer -enddate | sed 's/^/   issued leaf: /'
    "$work/prov_dev_sample" --uri "localhost:$mqtt_port" "${common[@]}" --registration-id demo-x509 \
        --cert "$work/issued-chain.pem" --key "$work/issued-key.pem"
    echo "== demo done: 6 registrations assigned, one certificate issued"
else
    echo "== (openssl not installed: the certificate issuance part is skipped)"
    echo "== demo done: 4 registrations assigned"
fi
echo "   (emulated-hub.azure-devices.net is the emulator's made-up hub: against Azure DPS, the hub"
echo "    is the IoT hub your enrollment assigns the device to)"
