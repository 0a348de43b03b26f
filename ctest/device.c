/* The LL-client-like driver behind device.h. */
#define _GNU_SOURCE
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../examples/c/dps_json.h"
#include "harness.h"

/* c-shared-utility's BUFFER_delete. The transport looks it up at run time (the executable
 * exports it: ENABLE_EXPORTS) when a reply record carries an authorization key. */
typedef struct BUFFER_TAG {
    unsigned char* buffer;
    size_t size;
} BUFFER;
int buffers_created, buffers_deleted;

void BUFFER_delete(BUFFER_HANDLE handle) {
    if (handle == NULL) return;
    buffers_deleted++;
    free(handle->buffer);
    free(handle);
}

static BUFFER_HANDLE buffer_create(const char* text) {
    BUFFER_HANDLE b = malloc(sizeof *b);
    if (b == NULL) return NULL;
    b->size = strlen(text);
    b->buffer = (unsigned char*)strdup(text);
    buffers_created++;
    return b;
}

static void check_thread(DEVICE* d) {
    if (!d->in_call || !pthread_equal(pthread_self(), d->owner)) d->wrong_thread++;
}

void on_error(PROV_DEVICE_TRANSPORT_ERROR error, void* ctx) {
    DEVICE* d = ctx;
    check_thread(d);
    d->error_count++;
    d->error = error;
}

char* on_challenge(const unsigned char* nonce, size_t nonce_len, const char* key_name, void* ctx) {
    DEVICE* d = ctx;
    check_thread(d);
    d->challenge_count++;
    d->challenge_args_ok = nonce == NULL && nonce_len == 0 && key_name != NULL && strcmp(key_name, "registration") == 0;
    return d->sas_token ? strdup(d->sas_token) : NULL;
}

char* on_create_json(const char* ek, const char* srk, void* ctx) {
    DEVICE* d = ctx;
    d->create_json_count++;
    d->create_json_args_ok = ek == NULL && srk == NULL;
    if (d->create_json_count == d->create_json_fail_at) return NULL;
    if (d->body_override != NULL) return strdup(d->body_override);
    char* body = NULL;
    if (d->payload != NULL) {
        if (asprintf(&body, "{\"registrationId\":\"%s\",\"payload\":%s}", d->registration_id, d->payload) < 0) body = NULL;
    } else if (asprintf(&body, "{\"registrationId\":\"%s\"}", d->registration_id) < 0) {
        body = NULL;
    }
    return body;
}

PROV_JSON_INFO* on_parse(const char* json, void* ctx) {
    DEVICE* d = ctx;
    check_thread(d);
    d->parse_count++;
    free(d->last_json);
    d->last_json = strdup(json);
    if (d->parse_fail) return NULL;
    char* status = dps_json_string(json, "status");
    if (status == NULL) return NULL; /* an error body: the LL client returns NULL */
    PROV_JSON_INFO* info = calloc(1, sizeof *info);
    if (info == NULL) { free(status); return NULL; }
    if (strcmp(status, "assigning") == 0 || strcmp(status, "unassigned") == 0) {
        info->prov_status = status[0] == 'a' ? PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING : PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED;
        info->operation_id = dps_json_string(json, "operationId");
        if (info->operation_id != NULL) snprintf(d->operation_id, sizeof d->operation_id, "%s", info->operation_id);
        if (info->prov_status == PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED) {
            /* the transport frees these of an UNASSIGNED record */
            info->key_name = strdup("registration");
            if (d->parse_with_key) info->authorization_key = buffer_create("unassigned-key");
        }
    } else if (strcmp(status, "assigned") == 0) {
        info->prov_status = PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED;
        info->iothub_uri = dps_json_string(json, "assignedHub");
        info->device_id = dps_json_string(json, "deviceId");
        if (d->parse_with_key) info->authorization_key = buffer_create("hub-key");
    } else if (strcmp(status, "disabled") == 0) {
        info->prov_status = PROV_DEVICE_TRANSPORT_STATUS_DISABLED;
    } else {
        free(info); /* "failed" and anything else: the LL client reports a parse error */
        info = NULL;
    }
    free(status);
    return info;
}

void on_registration_data(PROV_DEVICE_TRANSPORT_RESULT result, BUFFER_HANDLE key, const char* hub,
                          const char* device_id, void* ctx) {
    DEVICE* d = ctx;
    check_thread(d);
    d->data_count++;
    d->result = result;
    d->data_key_null = key == NULL;
    if (hub != NULL) snprintf(d->hub, sizeof d->hub, "%s", hub);
    if (device_id != NULL) snprintf(d->device_id, sizeof d->device_id, "%s", device_id);
    d->next = NEXT_NONE;
    if (d->destroy_in_callback) {
        d->table->prov_transport_destroy(d->handle);
        d->handle = NULL;
    } else if (d->close_in_callback && result == PROV_DEVICE_TRANSPORT_RESULT_OK) {
        d->table->prov_transport_close(d->handle); /* what the LL client does */
    }
}

void on_status(PROV_DEVICE_TRANSPORT_STATUS status, uint32_t retry_interval, void* ctx) {
    DEVICE* d = ctx;
    check_thread(d);
    if (d->status_count < DEVICE_MAX_STATUS) {
        d->status[d->status_count] = status;
        d->retry[d->status_count] = retry_interval;
    }
    d->status_count++;
    double now = now_s();
    switch (status) {
    case PROV_DEVICE_TRANSPORT_STATUS_CONNECTED:
        d->connected = 1;
        if (d->auto_register && d->next == NEXT_NONE && d->operation_id[0] == '\0') {
            d->next = NEXT_REGISTER;
            d->next_at = now;
        }
        break;
    case PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING:
    case PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED:
        if (d->auto_poll) {
            d->next = NEXT_POLL;
            d->next_at = now + retry_interval;
        }
        break;
    case PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT:
        d->next = d->operation_id[0] != '\0' ? NEXT_POLL : NEXT_REGISTER;
        d->next_at = now + retry_interval;
        break;
    default:
        break;
    }
}

void device_init(DEVICE* d, int ws, const char* registration_id) {
    memset(d, 0, sizeof *d);
    d->ws = ws;
    d->table = table_for(ws);
    d->uri = emu_uri(ws);
    snprintf(d->registration_id, sizeof d->registration_id, "%s", registration_id);
    d->credential = CRED_SAS;
    d->trusted_ca = emu_root_ca();
    d->close_in_callback = 1;
    d->auto_register = 1;
    d->auto_poll = 1;
    d->owner = pthread_self();
}

const char* transport_kind(int ws) { return ws ? "ws" : "mqtt"; }

void device_init_named(DEVICE* d, int ws, const char* prefix) {
    char id[sizeof d->registration_id];
    snprintf(id, sizeof id, "%s-%s", prefix, transport_kind(ws));
    device_init(d, ws, id);
}

void device_init_x509(DEVICE* d, int ws, int n) {
    device_init(d, ws, emu_x509_id(n));
    d->credential = CRED_X509;
    d->x509_index = n;
}

int device_create(DEVICE* d) {
    TRANSPORT_HSM_TYPE hsm = d->credential == CRED_SAS ? TRANSPORT_HSM_TYPE_SYMM_KEY : TRANSPORT_HSM_TYPE_X509;
    if (d->credential == CRED_SAS && d->sas_token == NULL) d->sas_token = emu_sas_token(d->registration_id);
    d->handle = d->table->prov_transport_create(d->uri, hsm, emu_scope(), "2021-06-01", on_error, d);
    return d->handle == NULL;
}

int device_open(DEVICE* d) {
    return d->table->prov_transport_open(d->handle, d->registration_id, NULL, NULL, on_registration_data, d, on_status,
                                         d, on_challenge, d);
}

int device_init_create(DEVICE* d, int ws, const char* registration_id) {
    device_init(d, ws, registration_id);
    return device_create(d);
}

int device_init_start(DEVICE* d, int ws, const char* registration_id) {
    device_init(d, ws, registration_id);
    return device_start(d);
}

int device_trust_and_open(DEVICE* d) {
    if (d->table->prov_transport_trusted_cert(d->handle, d->trusted_ca) != 0) return 1;
    return device_open(d);
}

int device_start(DEVICE* d) {
    if (device_create(d) != 0) return 1;
    if (d->trusted_ca != NULL && d->table->prov_transport_trusted_cert(d->handle, d->trusted_ca) != 0) return 1;
    if (d->credential == CRED_X509 &&
        d->table->prov_transport_x509_cert(d->handle, emu_x509_cert(d->x509_index), emu_x509_key(d->x509_index)) != 0)
        return 1;
    if (d->proxy.host_address != NULL && d->table->prov_transport_set_proxy(d->handle, &d->proxy) != 0) return 1;
    return device_open(d);
}

void device_step(DEVICE* d) {
    if (d->handle == NULL) return;
    d->in_call = 1;
    d->table->prov_transport_dowork(d->handle);
    d->in_call = 0;
    if (d->handle == NULL || d->next == NEXT_NONE || now_s() < d->next_at) return;
    NEXT what = d->next;
    d->next = NEXT_NONE;
    if (what == NEXT_REGISTER) {
        d->register_calls++;
        if (d->table->prov_transport_register(d->handle, on_parse, on_create_json, d) != 0) d->register_failures++;
    } else {
        d->poll_calls++;
        if (d->table->prov_transport_get_op_status(d->handle) != 0) d->poll_failures++;
    }
}

int device_run(DEVICE* d, double timeout_s) {
    double deadline = now_s() + timeout_s;
    while (d->data_count == 0 && now_s() < deadline) {
        device_step(d);
        sleep_ms(1);
    }
    return d->data_count > 0;
}

int device_run_until_connected(DEVICE* d, double timeout_s) {
    double deadline = now_s() + timeout_s;
    while (!d->connected && d->data_count == 0 && now_s() < deadline) {
        device_step(d);
        sleep_ms(1);
    }
    return d->connected;
}

int device_run_until_status(DEVICE* d, int n, double timeout_s) {
    double deadline = now_s() + timeout_s;
    while (d->status_count < n && d->data_count == 0 && now_s() < deadline) {
        device_step(d);
        sleep_ms(1);
    }
    return d->status_count >= n;
}

int device_connect_only(DEVICE* d, double timeout_s) {
    d->auto_register = 0;
    return device_start(d) == 0 && device_run_until_connected(d, timeout_s);
}

int device_run_to_register_reply(DEVICE* d, double timeout_s) {
    d->auto_poll = 0;
    return device_start(d) == 0 && device_run_until_status(d, 2, timeout_s);
}

int device_run_captured(DEVICE* d, double timeout_s, double idle_s, char** log) {
    capture_stderr_begin();
    int arrived = device_run(d, timeout_s);
    if (idle_s > 0) device_idle(d, idle_s);
    *log = capture_stderr_end();
    return arrived;
}

void device_idle(DEVICE* d, double seconds) {
    double deadline = now_s() + seconds;
    while (now_s() < deadline) {
        device_step(d);
        sleep_ms(2);
    }
}

void device_finish(DEVICE* d) {
    if (d->handle != NULL) {
        d->in_call = 1;
        d->table->prov_transport_close(d->handle);
        d->in_call = 0;
        d->table->prov_transport_destroy(d->handle);
        d->handle = NULL;
    }
    free(d->sas_token);
    d->sas_token = NULL;
    free(d->last_json);
    d->last_json = NULL;
}

int device_register(DEVICE* d, double timeout_s) {
    if (device_start(d) != 0) return 0;
    return device_run(d, timeout_s) && d->result == PROV_DEVICE_TRANSPORT_RESULT_OK;
}

int device_init_register(DEVICE* d, int ws, const char* registration_id, double timeout_s) {
    device_init(d, ws, registration_id);
    return device_register(d, timeout_s);
}
