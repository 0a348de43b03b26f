// Registers one device against the emulator with the real Azure IoT Node.js provisioning SDK.
// The emulator's root CA is trusted through NODE_EXTRA_CA_CERTS (the provisioning transports
// expose no `ca` option: setTransportOptions only takes pollingInterval).
// Prints one JSON line: {"ok":true,...} or {"ok":false,"error":"..."}; exits 0 either way.
'use strict';
const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name) => process.argv.includes('--' + name);

async function main() {
  const host = arg('host') || 'localhost';
  const scope = arg('scope');
  const regid = arg('regid');
  const transport = flag('ws') ? new MqttWs() : new Mqtt();
  let security;
  if (arg('key')) {
    security = new SymmetricKeySecurityClient(regid, arg('key'));
  } else {
    security = new X509Security(regid, {
      cert: fs.readFileSync(arg('cert'), 'utf8'),
      key: fs.readFileSync(arg('cert-key'), 'utf8'),
    });
  }
  const client = ProvisioningDeviceClient.create(host, scope, transport, security);
  if (arg('payload')) client.setProvisioningPayload(JSON.parse(arg('payload')));
  try {
    const r = await client.register();
    console.log(JSON.stringify({
      ok: true, status: r.status, hub: r.assignedHub, device_id: r.deviceId, payload: r.payload,
    }));
  } catch (e) {
    let text = (e && e.name ? e.name + ': ' : '') + (e && e.message ? e.message : String(e));
    if (e && e.result) text += ' result=' + JSON.stringify(e.result);
    if (e && e.transportError) text += ' transportError=' + String(e.transportError);
    console.log(JSON.stringify({ ok: false, error: text }));
  }
}

main().then(() => process.exit(0), (e) => {
  console.log(JSON.stringify({ ok: false, error: 'script failed: ' + String(e) }));
  process.exit(0);
});
