"""One registration with the real Python azure-iot-device SDK, timed around register().

Prints one JSON line: {"ok": bool, "register_s": float, "error": str?}. Symmetric key only.
"""
import argparse
import json
import time

from azure.iot.device import ProvisioningDeviceClient


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--scope", required=True)
    ap.add_argument("--regid", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ws", action="store_true")
    a = ap.parse_args()
    with open(a.ca) as f:
        ca = f.read()
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=a.host, registration_id=a.regid, id_scope=a.scope,
        symmetric_key=a.key, server_verification_cert=ca, websockets=a.ws)
    t = time.monotonic()
    try:
        r = client.register()
        out = {"ok": r.status == "assigned", "register_s": time.monotonic() - t}
    except Exception as e:  # report, the caller judges
        out = {"ok": False, "register_s": time.monotonic() - t, "error": f"{type(e).__name__}: {e}"}
    finally:
        try:
            client.shutdown()
        except Exception:
            pass
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
