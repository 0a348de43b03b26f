/*
 * A device registering with DPS through prov_mqtt_transport's provider table, driven the way the
 * Azure IoT C SDK's provisioning LL client drives a transport: create, options, open, a DoWork
 * loop, register on CONNECTED, poll after ASSIGNING with the retry interval, register again after
 * TRANSIENT, close inside the registration callback, destroy.
 *
 *   prov_dev_sample [--ws] --uri HOST[:PORT] --scope SCOPE --registration-id ID --trusted-ca FILE
 *                   (--cert FILE --key FILE | --sas-token TOKEN) [--trace]
 *                   [--csr FILE --issued-chain FILE]
 *
 * With --csr (a base64 DER PKCS#10 request whose CN is the registration id, as
 * `openssl req ... -outform DER | base64 -w0` makes) DPS issues a certificate for its key: the
 * chain (PEM, leaf first) is written to the --issued-chain file by the registration info hook.
 *
 * Prints "assigned hub=<hub> device=<id>" and exits 0 on success: the IoT hub DPS assigned the
 * device to (against the local emulator, the emulator's made-up emulated-hub.azure-devices.net).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dps_json.h"
#include "prov_mqtt_transport.h"

/* c-shared-utility's BUFFER_delete, which the transport looks up at run time when a reply carries
 * an authorization key (never for X.509 and symmetric keys). */
void BUFFER_delete(BUFFER_HANDLE handle) { free(handle); }

typedef enum { NEXT_NONE, NEXT_REGISTER, NEXT_POLL } NEXT;

typedef struct {
    const PROV_DEVICE_TRANSPORT_PROVIDER* table;
    const char* issued_chain_path;
    PROV_DEVICE_TRANSPORT_HANDLE handle;
    const char* registration_id;
    const char* sas_token;
    NEXT next;
    double next_at;
    int have_operation;
    int done;
    PROV_DEVICE_TRANSPORT_RESULT result;
    char hub[256];
    char device_id[256];
} DEVICE;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* s = malloc((size_t)n + 1);
    if (s == NULL || fread(s, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    s[n] = '\0';
    fclose(f);
    return s;
}

static void on_registration(PROV_DEVICE_TRANSPORT_RESULT result, BUFFER_HANDLE key, const char* hub,
                            const char* device_id, void* ctx) {
    DEVICE* d = ctx;
    (void)key;
    d->result = result;
    d->done = 1;
    d->next = NEXT_NONE;
    if (hub != NULL) snprintf(d->hub, sizeof d->hub, "%s", hub);
    if (device_id != NULL) snprintf(d->device_id, sizeof d->device_id, "%s", device_id);
    /* as the LL client does: close from inside the callback */
    d->table->prov_transport_close(d->handle);
}

/* The registration info hook (set_option "registration_info_hook"): runs just before
 * on_registration; its strings are valid during the call only. */
static void on_info(const PROV_MQTT_REGISTRATION_INFO* info, void* ctx) {
    DEVICE* d = ctx;
    if (info->error_code != 0)
        fprintf(stderr, "DPS error %d: errorCode %ld trackingId %s\n", info->dps_status, info->error_code,
                info->tracking_id ? info->tracking_id : "-");
    if (info->issued_certificate_chain == NULL || d->issued_chain_path == NULL) return;
    FILE* f = fopen(d->issued_chain_path, "w");
    if (f == NULL || fputs(info->issued_certificate_chain, f) < 0) fprintf(stderr, "cannot write %s\n", d->issued_chain_path);
    if (f != NULL) fclose(f);
    printf("issued certificate chain written to %s\n", d->issued_chain_path);
}

static void on_status(PROV_DEVICE_TRANSPORT_STATUS status, uint32_t retry_interval, void* ctx) {
    DEVICE* d = ctx;
    switch (status) {
    case PROV_DEVICE_TRANSPORT_STATUS_CONNECTED:
        printf("status: connected\n");
        d->next = NEXT_REGISTER; d->next_at = now_s();
        break;
    case PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING:
    case PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED:
        printf("status: assigning, polling in %u s\n", retry_interval);
        d->have_operation = 1;
        d->next = NEXT_POLL; d->next_at = now_s() + retry_interval;
        break;
    case PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT:
        printf("status: transient (throttled), retrying in %u s\n", retry_interval);
        d->next = d->have_operation ? NEXT_POLL : NEXT_REGISTER; d->next_at = now_s() + retry_interval;
        break;
    default:
        break;
    }
}

static void on_error(PROV_DEVICE_TRANSPORT_ERROR error, void* ctx) {
    (void)ctx;
    fprintf(stderr, "transport error: %s\n", error == PROV_DEVICE_ERROR_KEY_UNAUTHORIZED ? "unauthorized"
                                            : error == PROV_DEVICE_ERROR_KEY_FAIL         ? "key failure"
                                                                                          : "memory");
}

static char* on_challenge(const unsigned char* nonce, size_t nonce_len, const char* key_name, void* ctx) {
    DEVICE* d = ctx;
    (void)nonce; (void)nonce_len; (void)key_name;
    return d->sas_token == NULL ? NULL : strdup(d->sas_token);
}

static char* on_create_json(const char* ek, const char* srk, void* ctx) {
    DEVICE* d = ctx;
    (void)ek; (void)srk;
    size_t n = strlen(d->registration_id) + 32;
    char* body = malloc(n);
    if (body != NULL) snprintf(body, n, "{\"registrationId\":\"%s\"}", d->registration_id);
    return body;
}

static PROV_JSON_INFO* on_parse(const char* json, void* ctx) {
    (void)ctx;
    char* status = dps_json_string(json, "status");
    if (status == NULL) return NULL;  /* error bodies: the transport takes the error path */
    PROV_JSON_INFO* info = calloc(1, sizeof *info);
    if (info == NULL) { free(status); return NULL; }
    if (strcmp(status, "assigning") == 0 && (info->operation_id = dps_json_string(json, "operationId")) != NULL) {
        info->prov_status = PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING;
    } else if (strcmp(status, "assigned") == 0) {
        info->prov_status = PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED;
        info->iothub_uri = dps_json_string(json, "assignedHub");
        info->device_id = dps_json_string(json, "deviceId");
    } else {
        free(info);
        info = NULL;
    }
    free(status);
    return info;
}

int main(int argc, char** argv) {
    /* one line at a time, so that our lines and the library's (stderr) keep their order in a pipe */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *uri = NULL, *scope = NULL, *ca = NULL, *cert = NULL, *key = NULL, *csr = NULL;
    int ws = 0, trace = 0;
    DEVICE d;
    memset(&d, 0, sizeof d);
    for (int i = 1; i < argc; i++) {
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--ws") == 0) ws = 1;
        else if (strcmp(argv[i], "--trace") == 0) trace = 1;
        else if (v == NULL) { fprintf(stderr, "%s needs a value\n", argv[i]); return 2; }
        else if (strcmp(argv[i], "--uri") == 0) uri = argv[++i];
        else if (strcmp(argv[i], "--scope") == 0) scope = argv[++i];
        else if (strcmp(argv[i], "--registration-id") == 0) d.registration_id = argv[++i];
        else if (strcmp(argv[i], "--trusted-ca") == 0) ca = argv[++i];
        else if (strcmp(argv[i], "--cert") == 0) cert = argv[++i];
        else if (strcmp(argv[i], "--key") == 0) key = argv[++i];
        else if (strcmp(argv[i], "--sas-token") == 0) d.sas_token = argv[++i];
        else if (strcmp(argv[i], "--csr") == 0) csr = argv[++i];
        else if (strcmp(argv[i], "--issued-chain") == 0) d.issued_chain_path = argv[++i];
        else { fprintf(stderr, "unknown argument %s\n", argv[i]); return 2; }
    }
    if (uri == NULL || scope == NULL || d.registration_id == NULL || ca == NULL ||
        (d.sas_token == NULL && (cert == NULL || key == NULL))) {
        fprintf(stderr, "usage: %s [--ws] --uri HOST[:PORT] --scope SCOPE --registration-id ID --trusted-ca FILE "
                        "(--cert FILE --key FILE | --sas-token TOKEN) [--trace] [--csr FILE --issued-chain FILE]\n",
                argv[0]);
        return 2;
    }
    d.table = ws ? Prov_Device_MQTT_WS_Protocol() : Prov_Device_MQTT_Protocol();
    TRANSPORT_HSM_TYPE hsm = d.sas_token != NULL ? TRANSPORT_HSM_TYPE_SYMM_KEY : TRANSPORT_HSM_TYPE_X509;
    d.handle = d.table->prov_transport_create(uri, hsm, scope, "2021-06-01", on_error, &d);
    if (d.handle == NULL) return 1;
    char* ca_pem = read_file(ca);
    int rc = d.table->prov_transport_trusted_cert(d.handle, ca_pem);
    free(ca_pem);
    if (trace) rc |= d.table->prov_transport_set_trace(d.handle, true);
    if (hsm == TRANSPORT_HSM_TYPE_X509) {
        char *cert_pem = read_file(cert), *key_pem = read_file(key);
        rc |= d.table->prov_transport_x509_cert(d.handle, cert_pem, key_pem);
        free(cert_pem);
        free(key_pem);
    }
    /* what Prov_Device_LL_SetOption(handle, name, value) passes on for names the LL client does not know */
    PROV_MQTT_REGISTRATION_INFO_HOOK hook = {on_info, &d};
    rc |= d.table->prov_transport_set_option(d.handle, "registration_info_hook", &hook);
    if (csr != NULL) {
        char* csr_b64 = read_file(csr);
        rc |= d.table->prov_transport_set_option(d.handle, "certificate_signing_request", csr_b64);
        free(csr_b64);
    }
    rc |= d.table->prov_transport_open(d.handle, d.registration_id, NULL, NULL, on_registration, &d, on_status, &d,
                                       on_challenge, &d);
    if (rc != 0) { d.table->prov_transport_destroy(d.handle); return 1; }
    double deadline = now_s() + 120;
    while (!d.done && now_s() < deadline) {
        d.table->prov_transport_dowork(d.handle);
        if (d.next != NEXT_NONE && now_s() >= d.next_at) {
            NEXT n = d.next;
            d.next = NEXT_NONE;
            rc = n == NEXT_REGISTER ? d.table->prov_transport_register(d.handle, on_parse, on_create_json, &d)
                                    : d.table->prov_transport_get_op_status(d.handle);
            if (rc != 0) break;
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    d.table->prov_transport_close(d.handle);
    d.table->prov_transport_destroy(d.handle);
    if (d.done && d.result == PROV_DEVICE_TRANSPORT_RESULT_OK) {
        printf("assigned hub=%s device=%s (%s)\n", d.hub, d.device_id, ws ? "MQTT over WebSocket" : "MQTT over TLS");
        return 0;
    }
    fprintf(stderr, "registration failed\n");
    return 1;
}
