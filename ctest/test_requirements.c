/*
 * One test per requirement ID of seeds 000/001 (PROV_TRANSPORT_MQTT_CLIENT_07_0xx and
 * PROV_TRANSPORT_MQTT_WS_CLIENT_07_0xx) and per applicable SRS_NODE_PROVISIONING_MQTT_* ID of
 * seed 002, against the DPS emulator. REQUIREMENTS.md maps every ID.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "harness.h"

TEST(PROV_TRANSPORT_MQTT_CLIENT_07_001_create_uses_the_tls_io) {
    DEVICE d;
    device_init(&d, 0, "req-07-001-mqtt");
    CHECK(device_register(&d, 30));
    CHECK_EQ_INT(d.wrong_thread, 0);
    device_finish(&d);
    char* conns = emu_connections("req-07-001-mqtt", 1, 5);
    CHECK_EQ_INT(connection_count(conns), 1);
    CHECK(strstr(conns, "\"transport\":\"mqtt\"") != NULL);
    free(conns);
}
