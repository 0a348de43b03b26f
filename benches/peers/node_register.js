// One registration with the real Node.js azure-iot-provisioning-device(-mqtt) SDK, timed around
// register(). The SDK modules come from NODE_PATH (dps-emulator/fidelity/node/node_modules); the
// emulator's root CA from NODE_EXTRA_CA_CERTS. Prints {"ok": bool, "register_s": float, ...}.
'use strict';
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main() {
  const transport = process.argv.includes('--ws') ? new MqttWs() : new Mqtt();
  const security = new SymmetricKeySecurityClient(arg('regid'), arg('key'));
  const client = ProvisioningDeviceClient.create(arg('host') || 'localhost', arg('scope'), transport, security);
  const t = process.hrtime.bigint();
  const secs = () => Number(process.hrtime.bigint() - t) / 1e9;
  try {
    const r = await client.register();
    console.log(JSON.stringify({ ok: r.status === 'assigned', register_s: secs() }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, register_s: secs(), error: String(e && e.message || e) }));
  }
}

main().then(() => process.exit(0));
