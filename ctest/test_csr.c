/*
 * Certificate issuance and the registration details (issue 13) through each table, as an LL
 * application gets them: the CSR and the hook are given to the transport's set_option, where
 * Prov_Device_LL_SetOption sends option names it does not know. The fixture (emulator.sh) made
 * the CSRs with openssl; the emulator issues the certificates.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "harness.h"

#define TIMEOUT 60.0

/* What the hook saw (copied: its strings are valid during the call only). */
typedef struct SEEN {
    int calls;
    int data_count_before;
    char* chain;
    char* profile;
    char* substatus;
    char* etag;
    int dps_status;
    long error_code;
    char* tracking_id;
    char* message;
    DEVICE* device;
} SEEN;

static char* dup_or_null(const char* s) { return s == NULL ? NULL : strdup(s); }

static void on_info(const PROV_MQTT_REGISTRATION_INFO* info, void* context) {
    SEEN* seen = context;
    if (seen->calls++ > 0) return;
    seen->data_count_before = seen->device->data_count;
    seen->chain = dup_or_null(info->issued_certificate_chain);
    seen->profile = dup_or_null(info->connection_profile);
    seen->substatus = dup_or_null(info->substatus);
    seen->etag = dup_or_null(info->etag);
    seen->dps_status = info->dps_status;
    seen->error_code = info->error_code;
    seen->tracking_id = dup_or_null(info->tracking_id);
    seen->message = dup_or_null(info->error_message);
}

static void seen_free(SEEN* s) {
    free(s->chain), free(s->profile), free(s->substatus), free(s->etag), free(s->tracking_id), free(s->message);
}

/* create, trust the emulator, the CSR (when given) and the hook through set_option, open. */
static int start_with_hook(DEVICE* d, SEEN* seen, const char* csr) {
    seen->device = d;
    if (device_create(d) != 0) return 1;
    if (d->table->prov_transport_trusted_cert(d->handle, d->trusted_ca) != 0) return 1;
    if (csr != NULL && d->table->prov_transport_set_option(d->handle, "certificate_signing_request", csr) != 0)
        return 1;
    PROV_MQTT_REGISTRATION_INFO_HOOK hook = {on_info, seen}; /* copied by the call */
    if (d->table->prov_transport_set_option(d->handle, "registration_info_hook", &hook) != 0) return 1;
    return device_open(d);
}

static char* fixture_csr(const char* registration_id) {
    char path[512];
    snprintf(path, sizeof path, "%s/csr-%s.b64", getenv("PMT_EMU_DIR"), registration_id);
    return read_text_file(path);
}

static void csr_issued(int ws) {
    const char* id = ws ? "csr-issued-ws" : "csr-issued-mqtt";
    char* csr = fixture_csr(id);
    CHECK(csr != NULL);
    DEVICE d;
    SEEN seen = {0};
    device_init(&d, ws, id);
    CHECK_EQ_INT(start_with_hook(&d, &seen, csr), 0);
    free(csr);
    CHECK_RUN_OK(&d, TIMEOUT);
    CHECK_EQ_INT(seen.calls, 1);
    CHECK_EQ_INT(seen.data_count_before, 0); /* just before the data callback */
    CHECK_EQ_INT(seen.dps_status, 200);
    CHECK(seen.chain != NULL && strncmp(seen.chain, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    CHECK_EQ_INT(count_of(seen.chain, "-----BEGIN CERTIFICATE-----"), 2); /* leaf, intermediate */
    CHECK_STR(seen.substatus, "initialAssignment");
    CHECK_EQ_INT(seen.error_code, 0);
    CHECK(seen.tracking_id == NULL);
    /* the chain verifies against the emulator's root, and the leaf is for the CSR's key */
    char path[600], cmd[2400];
    snprintf(path, sizeof path, "%s/issued-%s.pem", getenv("PMT_EMU_DIR"), id);
    FILE* f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(seen.chain, f);
    fclose(f);
    const char* dir = getenv("PMT_EMU_DIR");
    snprintf(cmd, sizeof cmd,
             "openssl verify -purpose sslclient -CAfile %s/certs/root-ca.pem -untrusted %s %s >/dev/null && "
             "[ \"$(openssl x509 -in %s -pubkey -noout)\" = \"$(openssl pkey -in %s/csr-%s.key -pubout)\" ]",
             dir, path, path, path, dir, id);
    CHECK_EQ_INT(system(cmd), 0);
    device_idle(&d, 0.2);
    CHECK_EQ_INT(seen.calls, 1);
    device_finish(&d);
    seen_free(&seen);
    /* the wire: csr in the register body, not in the poll; the api-version raised for it */
    char* conns = emu_connections(id, 1, 20);
    CHECK(strstr(conns, "\"api_version\":\"2025-07-01-preview\"") != NULL);
    CHECK_EQ_INT(count_of(conns, "\"csr\":true"), 1);
    CHECK(count_of(conns, "\"csr\":false") >= 1); /* the poll */
    free(conns);
}

TEST(csr_issued_through_set_option_and_the_hook_mqtt) { csr_issued(0); }
TEST(csr_issued_through_set_option_and_the_hook_ws) { csr_issued(1); }

static void hook_on_401(int ws) {
    const char* id = ws ? "hook-401-ws" : "hook-401-mqtt";
    DEVICE d;
    SEEN seen = {0};
    device_init(&d, ws, id);
    CHECK_EQ_INT(start_with_hook(&d, &seen, NULL), 0);
    CHECK(device_run(&d, TIMEOUT));
    CHECK_EQ_INT(d.result, PROV_DEVICE_TRANSPORT_RESULT_ERROR);
    CHECK_EQ_INT(seen.calls, 1);
    CHECK_EQ_INT(seen.data_count_before, 0);
    CHECK_EQ_INT(seen.dps_status, 401);
    CHECK_EQ_INT(seen.error_code, 401002);
    CHECK(seen.tracking_id != NULL && strlen(seen.tracking_id) > 0);
    CHECK_STR(seen.message, "certificate not found");
    CHECK(seen.chain == NULL && seen.profile == NULL);
    device_finish(&d);
    seen_free(&seen);
}

TEST(hook_reports_a_401_mqtt) { hook_on_401(0); }
TEST(hook_reports_a_401_ws) { hook_on_401(1); }
