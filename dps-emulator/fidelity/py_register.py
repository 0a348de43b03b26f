"""Registers one device against the emulator with the real azure-iot-device SDK.

Prints one JSON line: {"ok": true, "status": ..., "hub": ..., "device_id": ..., "payload": ...}
or {"ok": false, "error": "<exception type>: <text>"}; exits 0 either way (the caller judges).
"""
import argparse
import json
import sys

from azure.iot.device import ProvisioningDeviceClient, X509


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--scope", required=True)
    ap.add_argument("--regid", required=True)
    ap.add_argument("--ca", required=True, help="root CA PEM file")
    ap.add_argument("--key", help="symmetric key (base64)")
    ap.add_argument("--cert", help="device certificate chain PEM file")
    ap.add_argument("--cert-key", help="device private key PEM file")
    ap.add_argument("--ws", action="store_true", help="MQTT over WebSocket (port 443)")
    ap.add_argument("--payload", help="JSON payload to send with the registration")
    a = ap.parse_args()

    with open(a.ca) as f:
        ca = f.read()
    common = dict(server_verification_cert=ca, websockets=a.ws)
    if a.key:
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=a.host, registration_id=a.regid, id_scope=a.scope,
            symmetric_key=a.key, **common)
    else:
        client = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=a.host, registration_id=a.regid, id_scope=a.scope,
            x509=X509(cert_file=a.cert, key_file=a.cert_key), **common)
    if a.payload:
        client.provisioning_payload = json.loads(a.payload)
    try:
        result = client.register()
    except Exception as e:  # the SDK's errors carry the service's answer
        cause = e.__cause__
        text = "{}: {}".format(type(e).__name__, e)
        if cause is not None:
            text += " (cause {}: {})".format(type(cause).__name__, cause)
        print(json.dumps({"ok": False, "error": text}))
        return 0
    finally:
        try:
            client.shutdown()
        except Exception:
            pass
    rs = result.registration_state
    print(json.dumps({
        "ok": True,
        "status": result.status,
        "operation_id": result.operation_id,
        "hub": rs.assigned_hub if rs else None,
        "device_id": rs.device_id if rs else None,
        "payload": rs.response_payload if rs else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
