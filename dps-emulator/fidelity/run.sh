#!/usr/bin/env bash
# Fidelity check: the real Azure IoT device SDKs (Python azure-iot-device, Node.js
# azure-iot-provisioning-device[-mqtt]) register against dps-emulator on 127.0.0.1:8883 (MQTT/TLS)
# and 127.0.0.1:443 (MQTT/WSS) -- the SDKs cannot be pointed at other ports -- with symmetric keys
# (individual and group-derived) and X.509 chains, plus a throttled (429) and an unauthorized
# (401) registration per SDK. Prints "PASS name" / "FAIL name: reason" per case and a final
# "N passed, M failed"; exits non-zero if any case failed.
#
# Idempotent: installs the SDKs into dps-emulator/fidelity/.venv and fidelity/node/node_modules
# (reused when present), builds the emulator with cargo. Needs python3 (with venv), node + npm,
# cargo, and permission to bind port 443 (root, or CAP_NET_BIND_SERVICE).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/dps-emulator-fidelity.XXXXXX)
SCOPE=0ne00fide11
EMU_PID=

cleanup() {
  if [ -n "$EMU_PID" ]; then kill "$EMU_PID" 2>/dev/null; wait "$EMU_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "FAIL setup: $*"; echo "0 passed, 1 failed"; exit 1; }

# --- tools -------------------------------------------------------------------------------
VENV="$HERE/.venv"
"$ROOT/scripts/install-peers.sh" || die "installing the peer SDKs failed (scripts/install-peers.sh)"

# --- emulator ----------------------------------------------------------------------------
(cd "$ROOT" && cargo build --quiet -p dps-emulator) || die "cargo build -p dps-emulator failed"
EMU="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dps-emulator"
[ -x "$EMU" ] || die "no emulator binary at $EMU"

X509_IDS=(py-x509-mqtt py-x509-ws node-x509-mqtt node-x509-ws)
dev_args=()
for id in "${X509_IDS[@]}"; do dev_args+=(--device "$id"); done
"$EMU" certs --out "$WORK/certs" "${dev_args[@]}" >/dev/null || die "dps-emulator certs failed"

b64key() { python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'; }
derive() { # group key, registration id -> device key
  python3 -c 'import base64,hashlib,hmac,sys; k=base64.b64decode(sys.argv[1]); print(base64.b64encode(hmac.new(k, sys.argv[2].encode(), hashlib.sha256).digest()).decode())' "$1" "$2"
}
GROUP_KEY=$(b64key)
declare -A KEYS
key_args=()
# individual enrollments (MQTT cases, scenario cases); the WebSocket cases use the group key
for id in py-sym-mqtt node-sym-mqtt py-throttled node-throttled py-unauthorized node-unauthorized; do
  KEYS[$id]=$(b64key)
  key_args+=(--symmetric-key "$id=${KEYS[$id]}")
done
for id in py-sym-ws node-sym-ws; do KEYS[$id]=$(derive "$GROUP_KEY" "$id"); done

cat > "$WORK/config.json" <<JSON
{
  "scenarios": {
    "py-throttled":   { "throttle_429": 2 },
    "node-throttled": { "throttle_429": 2 },
    "py-unauthorized":   { "error": { "status": 401, "error_code": 401002, "on": "register",
                           "message": "The device certificate is not trusted (fidelity case)" } },
    "node-unauthorized": { "error": { "status": 401, "error_code": 401002, "on": "register",
                           "message": "The device certificate is not trusted (fidelity case)" } }
  }
}
JSON

for port in 8883 443; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is already in use"; fi
done
"$EMU" serve --config "$WORK/config.json" --certs "$WORK/certs" --scope "$SCOPE" \
  --mqtt-port 8883 --ws-port 443 --group-key "$GROUP_KEY" "${key_args[@]}" \
  --timeline "$WORK/timeline.jsonl" >"$WORK/emu.out" 2>"$WORK/emu.log" &
EMU_PID=$!
for _ in $(seq 1 100); do
  grep -q '^dps-emulator listening' "$WORK/emu.out" 2>/dev/null && break
  kill -0 "$EMU_PID" 2>/dev/null || break
  sleep 0.1
done
grep -q '^dps-emulator listening' "$WORK/emu.out" 2>/dev/null \
  || die "emulator did not start: $(tail -3 "$WORK/emu.log" "$WORK/emu.out" 2>/dev/null | tr '\n' ' ')"
export NODE_EXTRA_CA_CERTS="$WORK/certs/root-ca.pem"

# --- cases -------------------------------------------------------------------------------
PASSED=0
FAILED=0
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }

# run_client SDK ID TRANSPORT AUTH [extra args...] -> the client's JSON line on stdout
run_client() {
  local sdk=$1 id=$2 transport=$3 auth=$4; shift 4
  local args=(--scope "$SCOPE" --regid "$id")
  [ "$transport" = ws ] && args+=(--ws)
  if [ "$auth" = x509 ]; then
    args+=(--cert "$WORK/certs/device-$id.pem" --cert-key "$WORK/certs/device-$id-key.pem")
  else
    args+=(--key "${KEYS[$id]}")
  fi
  if [ "$sdk" = py ]; then
    timeout 60 "$VENV/bin/python" "$HERE/py_register.py" --ca "$WORK/certs/root-ca.pem" "${args[@]}" "$@" 2>>"$WORK/client.log"
  else
    timeout 60 node "$HERE/node/register.js" "${args[@]}" "$@" 2>>"$WORK/client.log"
  fi
}

# judge NAME JSON EXPECT: EXPECT is "assigned[:payload]" or "error:<regex on the error text>"
judge() {
  python3 - "$@" <<'PY'
import json, re, sys
name, out, expect = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [l for l in out.splitlines() if l.startswith("{")]
if not lines:
    print("no result from the client" + (": " + out.strip()[-200:] if out.strip() else "")); sys.exit(1)
r = json.loads(lines[-1])
if expect.startswith("assigned"):
    if not r.get("ok"):
        print("registration failed: " + r.get("error", "?")); sys.exit(1)
    want_dev = name.split(" ")[0]
    if r.get("status") != "assigned" or r.get("hub") != "emulated-hub.azure-devices.net":
        print("unexpected result " + lines[-1]); sys.exit(1)
    if r.get("device_id") != want_dev:
        print("deviceId %r, expected %r" % (r.get("device_id"), want_dev)); sys.exit(1)
    if expect == "assigned:payload":
        p = r.get("payload")
        if isinstance(p, str):
            p = json.loads(p)
        if p != {"modelId": "dtmi:fidelity:check;1"}:
            print("payload not echoed: %r" % (r.get("payload"),)); sys.exit(1)
else:
    pattern = expect.split(":", 1)[1]
    if r.get("ok"):
        print("registration succeeded but an error was expected"); sys.exit(1)
    if not re.search(pattern, r.get("error", "")):
        print("error %r does not match %r" % (r.get("error"), pattern)); sys.exit(1)
print("ok")
PY
}

# case NAME SDK ID TRANSPORT AUTH EXPECT [extra args]
case_() {
  local name=$1 sdk=$2 id=$3 transport=$4 auth=$5 expect=$6; shift 6
  local out verdict
  out=$(run_client "$sdk" "$id" "$transport" "$auth" "$@")
  if verdict=$(judge "$id $name" "$out" "$expect"); then pass "$name"; else fail "$name" "$verdict"; fi
}

PAYLOAD='{"modelId":"dtmi:fidelity:check;1"}'
case_ python-mqtt-symmetric-key  py   py-sym-mqtt    mqtt sym  assigned:payload --payload "$PAYLOAD"
case_ python-mqtt-x509           py   py-x509-mqtt   mqtt x509 assigned
case_ python-wss-symmetric-key   py   py-sym-ws      ws   sym  assigned
case_ python-wss-x509            py   py-x509-ws     ws   x509 assigned
case_ node-mqtt-symmetric-key    node node-sym-mqtt  mqtt sym  assigned:payload --payload "$PAYLOAD"
case_ node-mqtt-x509             node node-x509-mqtt mqtt x509 assigned
case_ node-wss-symmetric-key     node node-sym-ws    ws   sym  assigned
case_ node-wss-x509              node node-x509-ws   ws   x509 assigned

# 429: both SDKs retry after retry-after and then register; the emulator must have throttled.
throttled_case() {
  local name=$1 sdk=$2 id=$3 out verdict n
  out=$(run_client "$sdk" "$id" mqtt sym)
  if ! verdict=$(judge "$id $name" "$out" assigned); then fail "$name" "$verdict"; return; fi
  n=$(grep -c "$id: register \$rid=.* -> 429" "$WORK/emu.log")
  if [ "$n" -ge 2 ]; then pass "$name"; else fail "$name" "expected 2 throttled requests in the emulator log, saw $n"; fi
}
throttled_case python-429-retried-then-assigned py   py-throttled
throttled_case node-429-retried-then-assigned   node node-throttled

# 401: the SDKs surface the service's refusal as an error
case_ python-401-error-surfaced py   py-unauthorized   mqtt sym 'error:service error status code 401'
case_ node-401-error-surfaced   node node-unauthorized mqtt sym 'error:UnauthorizedError.*401002'

if [ "$FAILED" -gt 0 ]; then
  echo "--- emulator log (last 40 lines)"; tail -40 "$WORK/emu.log"
  echo "--- client stderr (last 20 lines)"; tail -20 "$WORK/client.log" 2>/dev/null
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
