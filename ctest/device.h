/*
 * An LL-client-like driver: it drives a transport through its provider table exactly the way
 * the SDK's prov_device_ll_client does (create, options, open, a dowork loop, register on
 * CONNECTED, poll after ASSIGNING/UNASSIGNED with the retry interval, register or poll again
 * after TRANSIENT, close inside the registration callback, destroy), and records every callback
 * so tests can check what arrived, with which arguments, on which thread.
 */
#ifndef PMT_DEVICE_H
#define PMT_DEVICE_H

#include <pthread.h>
#include <stdint.h>

#include "prov_mqtt_transport.h"

#define DEVICE_MAX_STATUS 64

typedef enum { CRED_SAS, CRED_X509, CRED_NONE } CREDENTIAL;
typedef enum { NEXT_NONE, NEXT_REGISTER, NEXT_POLL } NEXT;

typedef struct DEVICE {
    /* set by device_init, may be changed before device_start */
    int ws;
    const PROV_DEVICE_TRANSPORT_PROVIDER* table;
    const char* uri;
    char registration_id[128];
    CREDENTIAL credential;
    int x509_index;
    const char* trusted_ca;      /* NULL: do not call trusted_cert */
    const char* payload;         /* custom allocation payload JSON, or NULL */
    const char* body_override;   /* json_create_cb returns exactly this, or NULL */
    int create_json_fail_at;     /* json_create_cb returns NULL on this call (1-based; 0 never) */
    int parse_fail;              /* json_parse_cb returns NULL */
    int parse_with_key;          /* replies carry a non-NULL authorization_key BUFFER */
    int close_in_callback;       /* like the LL client: close inside data_callback on success */
    int destroy_in_callback;     /* an application destroying the handle in data_callback */
    int auto_register;           /* register on CONNECTED (default 1) */
    int auto_poll;               /* poll after ASSIGNING (default 1) */
    HTTP_PROXY_OPTIONS proxy;    /* used when proxy.host_address != NULL */

    /* the transport */
    PROV_DEVICE_TRANSPORT_HANDLE handle;
    char* sas_token;
    pthread_t owner;
    int in_call;                 /* inside dowork or close */

    /* what arrived */
    int connected;
    int status_count;
    PROV_DEVICE_TRANSPORT_STATUS status[DEVICE_MAX_STATUS];
    uint32_t retry[DEVICE_MAX_STATUS];
    int data_count;
    PROV_DEVICE_TRANSPORT_RESULT result;
    int data_key_null;
    char hub[256];
    char device_id[256];
    int error_count;
    PROV_DEVICE_TRANSPORT_ERROR error;
    int challenge_count;
    int challenge_args_ok;
    int create_json_count;
    int create_json_args_ok;
    int parse_count;
    char* last_json;             /* the last document given to json_parse_cb */
    char operation_id[256];
    int wrong_thread;            /* callbacks outside dowork/close or on another thread */
    int register_calls, poll_calls;
    int register_failures, poll_failures;

    NEXT next;
    double next_at;
} DEVICE;

/* Fills in defaults: SAS credential, the emulator's root CA, LL-like behaviour. */
void device_init(DEVICE* d, int ws, const char* registration_id);
/* device_init, then device_create's (or device_start's, or device_register's) result. */
int device_init_create(DEVICE* d, int ws, const char* registration_id);
int device_init_start(DEVICE* d, int ws, const char* registration_id);
int device_init_register(DEVICE* d, int ws, const char* registration_id, double timeout_s);
/* "ws" or "mqtt". */
const char* transport_kind(int ws);
/* device_init with the registration id "<prefix>-<transport_kind(ws)>" (in d->registration_id). */
void device_init_named(DEVICE* d, int ws, const char* prefix);
/* device_init for X.509 device n: its registration id, credential and certificate index. */
void device_init_x509(DEVICE* d, int ws, int n);
/* create + options (trusted cert, x509, proxy) + open; 0 on success. */
int device_start(DEVICE* d);
/* create only (options and open are left to the test). */
int device_create(DEVICE* d);
int device_open(DEVICE* d);
/* trusted_cert (d->trusted_ca) then open, for a handle the test created and set up; 0 on success. */
int device_trust_and_open(DEVICE* d);
/* One dowork, as the LL client does it, plus its register/poll scheduling. */
void device_step(DEVICE* d);
/* Steps until data_callback arrived or timeout_s passed; 1 if it arrived. */
int device_run(DEVICE* d, double timeout_s);
/* Steps until CONNECTED was reported (or data_callback/timeout); 1 if connected. */
int device_run_until_connected(DEVICE* d, double timeout_s);
/* Steps until status_count reaches n; 1 if it did. */
int device_run_until_status(DEVICE* d, int n, double timeout_s);
/* With auto_register off: start, and step until CONNECTED; 1 if started and connected. */
int device_connect_only(DEVICE* d, double timeout_s);
/* With auto_poll off: start, and step until the register reply's status (the second); 1 if it came. */
int device_run_to_register_reply(DEVICE* d, double timeout_s);
/* device_run with stderr captured, stepping idle_s more inside the capture; *log gets what was
 * written (malloc'ed). 1 if data_callback arrived. */
int device_run_captured(DEVICE* d, double timeout_s, double idle_s, char** log);
/* Steps for a while, whatever happens. */
void device_idle(DEVICE* d, double seconds);
/* close (if the handle is open) and destroy; frees what the driver holds. */
void device_finish(DEVICE* d);

/* One registration end to end; 1 when assigned. */
int device_register(DEVICE* d, double timeout_s);

/* Two checks at the caller's line: data_callback arrived within timeout_s, and with OK. */
#define CHECK_RUN_OK(d, timeout_s)                                  \
    do {                                                            \
        CHECK(device_run((d), (timeout_s)));                        \
        CHECK_EQ_INT((d)->result, PROV_DEVICE_TRANSPORT_RESULT_OK); \
    } while (0)
/* Three checks at the caller's line: the data callback arrived, exactly once, with ERROR. */
#define CHECK_ERROR_PATH_ONCE(arrived, d)                              \
    do {                                                               \
        CHECK(arrived);                                                \
        CHECK_EQ_INT((d)->result, PROV_DEVICE_TRANSPORT_RESULT_ERROR); \
        CHECK_EQ_INT((d)->data_count, 1);                              \
    } while (0)

/* The authorization-key buffers this process handed out and BUFFER_delete freed. */
extern int buffers_created, buffers_deleted;

/* The LL client's callbacks, for tests that call the slots themselves. */
void on_registration_data(PROV_DEVICE_TRANSPORT_RESULT result, BUFFER_HANDLE key, const char* hub,
                          const char* device_id, void* ctx);
void on_status(PROV_DEVICE_TRANSPORT_STATUS status, uint32_t retry_interval, void* ctx);
char* on_challenge(const unsigned char* nonce, size_t nonce_len, const char* key_name, void* ctx);
void on_error(PROV_DEVICE_TRANSPORT_ERROR error, void* ctx);
PROV_JSON_INFO* on_parse(const char* json, void* ctx);
char* on_create_json(const char* ek, const char* srk, void* ctx);

#endif
