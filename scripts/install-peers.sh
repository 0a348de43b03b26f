#!/usr/bin/env bash
# The real DPS clients the emulator is checked against, and the bench's plotting library, each
# into a local environment (reused when present, so a second call is a no-op):
#   azure-iot-device              dps-emulator/fidelity/.venv            (PyPI)
#   the Node provisioning SDK     dps-emulator/fidelity/node/node_modules (npm, from package-lock.json)
#   matplotlib (--bench only)     benches/.venv                          (PyPI)
# Needs python3 with venv, node and npm. Used by dps-emulator/fidelity/run.sh and scripts/bench.sh;
# scripts/test.sh runs it in the background while the first phases build.
set -euo pipefail
cd "$(dirname "$0")/.."
fid=dps-emulator/fidelity
if ! "$fid/.venv/bin/python" -c 'import azure.iot.device' 2>/dev/null; then
    echo "install-peers: azure-iot-device into $fid/.venv"
    python3 -m venv "$fid/.venv" || { echo "install-peers: python3 -m venv failed (apt-get install python3-venv?)" >&2; exit 1; }
    "$fid/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$fid/requirements.txt"
fi
if [ ! -d "$fid/node/node_modules/azure-iot-provisioning-device-mqtt" ]; then
    echo "install-peers: the Node provisioning SDK into $fid/node/node_modules"
    (cd "$fid/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ "${1:-}" = --bench ] && ! benches/.venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    echo "install-peers: matplotlib into benches/.venv"
    python3 -m venv benches/.venv
    benches/.venv/bin/pip install --quiet --disable-pip-version-check -r benches/requirements.txt
fi
