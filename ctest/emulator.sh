#!/usr/bin/env bash
# The CTest fixture: starts (or stops) the DPS emulator and a tinyproxy for the C tests.
#
#   emulator.sh start DIR DPS_EMULATOR_BINARY   writes DIR/env, DIR/certs, DIR/foreign, DIR/*.log
#   emulator.sh stop DIR
#
# Scenarios per registration id come from ctest/emulator.json; every device uses the group key
# (tests mint SAS tokens with `dps-emulator sas --group`), X.509 devices are x509-0 .. x509-39.
set -euo pipefail
cmd=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)

stop() {
    for pidfile in "$dir/emulator.pid" "$dir/tinyproxy.pid"; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$cmd" in
stop)
    stop
    exit 0
    ;;
start)
    emulator=$3
    stop
    rm -rf "$dir"
    mkdir -p "$dir"
    devices=()
    for n in $(seq 0 39); do devices+=(--device "x509-$n"); done
    "$emulator" certs --out "$dir/certs" "${devices[@]}" >/dev/null
    "$emulator" certs --out "$dir/foreign" >/dev/null
    # certificate signing requests for ctest/test_csr.c: base64 DER PKCS#10, CN = the registration id
    for id in csr-issued-mqtt csr-issued-ws; do
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/csr-$id.key" \
            -subj "/CN=$id" -outform DER 2>/dev/null | base64 -w0 >"$dir/csr-$id.b64"
    done
    scope=0ne000c7e57
    group_key=$(printf 'ctest-group-key-for-the-emulator' | base64)
    setsid "$emulator" serve --config "$here/emulator.json" --certs "$dir/certs" --mqtt-port 0 --ws-port 0 \
        --scope "$scope" --group-key "$group_key" --timeline "$dir/timeline.jsonl" \
        </dev/null >"$dir/emulator.out" 2>"$dir/emulator.log" &
    echo $! >"$dir/emulator.pid"
    for _ in $(seq 200); do grep -q listening "$dir/emulator.out" 2>/dev/null && break; sleep 0.05; done
    line=$(grep listening "$dir/emulator.out") || { cat "$dir/emulator.log" >&2; exit 1; }
    echo "$line"
    {
        echo "MQTT_PORT=$(sed -n 's/.*mqtt=[^ ]*:\([0-9]*\).*/\1/p' <<<"$line")"
        echo "WS_PORT=$(sed -n 's/.*ws=[^ ]*:\([0-9]*\).*/\1/p' <<<"$line")"
        echo "SCOPE=$scope"
        echo "GROUP_KEY=$group_key"
        echo "EMULATOR=$emulator"
    } >"$dir/env"
    if command -v tinyproxy >/dev/null; then
        port=$(free_port)
        printf 'Port %s\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nBasicAuth ctest proxy-secret-7f3a\nLogLevel Connect\nMaxClients 50\n' \
            "$port" >"$dir/tinyproxy.conf"
        setsid tinyproxy -d -c "$dir/tinyproxy.conf" </dev/null >"$dir/tinyproxy.log" 2>&1 &
        echo $! >"$dir/tinyproxy.pid"
        for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
        { echo "PROXY_PORT=$port"; echo "PROXY_USER=ctest"; echo "PROXY_PASSWORD=proxy-secret-7f3a"; } >>"$dir/env"
        echo "tinyproxy listening on 127.0.0.1:$port"
    else
        echo "tinyproxy is not installed: the proxy tests will fail (apt-get install tinyproxy)"
    fi
    ;;
*)
    echo "usage: $0 start DIR DPS_EMULATOR | stop DIR" >&2
    exit 2
    ;;
esac
