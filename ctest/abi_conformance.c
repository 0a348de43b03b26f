/*
 * ABI conformance: every size, offset and enum value of docs/spec/abi.md checked at compile
 * time against the generated header, the four entry points assigned to the SDK's function-pointer
 * shapes, and every slot of every table checked at run time. Built three times: against the
 * shared library, the static library, and through the SDK's target names.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

/* Enums: plain C enums, int-sized, numbered from 0 in the SDK's order, no INVALID member. */
_Static_assert(sizeof(TRANSPORT_HSM_TYPE) == sizeof(int), "TRANSPORT_HSM_TYPE is int-sized");
_Static_assert(TRANSPORT_HSM_TYPE_TPM == 0 && TRANSPORT_HSM_TYPE_X509 == 1 && TRANSPORT_HSM_TYPE_SYMM_KEY == 2, "hsm");
_Static_assert(sizeof(PROV_DEVICE_TRANSPORT_RESULT) == sizeof(int), "result is int-sized");
_Static_assert(PROV_DEVICE_TRANSPORT_RESULT_OK == 0 && PROV_DEVICE_TRANSPORT_RESULT_UNAUTHORIZED == 1 &&
                   PROV_DEVICE_TRANSPORT_RESULT_ERROR == 2, "result");
_Static_assert(sizeof(PROV_DEVICE_TRANSPORT_STATUS) == sizeof(int), "status is int-sized");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_CONNECTED == 0, "CONNECTED");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_AUTHENTICATED == 1, "AUTHENTICATED");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_UNASSIGNED == 2, "UNASSIGNED");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_ASSIGNING == 3, "ASSIGNING");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_ASSIGNED == 4, "ASSIGNED");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_BLACKLISTED == 5, "BLACKLISTED");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_TRANSIENT == 6, "TRANSIENT");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_ERROR == 7, "ERROR");
_Static_assert(PROV_DEVICE_TRANSPORT_STATUS_DISABLED == 8, "DISABLED");
_Static_assert(sizeof(PROV_DEVICE_TRANSPORT_ERROR) == sizeof(int), "error is int-sized");
_Static_assert(PROV_DEVICE_ERROR_KEY_FAIL == 0 && PROV_DEVICE_ERROR_KEY_UNAUTHORIZED == 1 && PROV_DEVICE_ERROR_MEMORY == 2,
               "error");

/* Plain types and records (LP64 offsets from the spec). */
_Static_assert(sizeof(PROV_DEVICE_TRANSPORT_HANDLE) == sizeof(void*), "handle is a pointer");
_Static_assert(sizeof(BUFFER_HANDLE) == sizeof(void*), "BUFFER_HANDLE is a pointer");
_Static_assert(sizeof(HTTP_PROXY_OPTIONS) == 32, "HTTP_PROXY_OPTIONS is 32 bytes");
_Static_assert(offsetof(HTTP_PROXY_OPTIONS, host_address) == 0, "host_address");
_Static_assert(offsetof(HTTP_PROXY_OPTIONS, port) == 8, "port");
_Static_assert(offsetof(HTTP_PROXY_OPTIONS, username) == 16, "username");
_Static_assert(offsetof(HTTP_PROXY_OPTIONS, password) == 24, "password");
_Static_assert(sizeof(((HTTP_PROXY_OPTIONS*)0)->port) == sizeof(int), "port is int");
_Static_assert(sizeof(PROV_JSON_INFO) == 48, "PROV_JSON_INFO is 48 bytes");
_Static_assert(offsetof(PROV_JSON_INFO, prov_status) == 0, "prov_status");
_Static_assert(offsetof(PROV_JSON_INFO, operation_id) == 8, "operation_id");
_Static_assert(offsetof(PROV_JSON_INFO, authorization_key) == 16, "authorization_key");
_Static_assert(offsetof(PROV_JSON_INFO, key_name) == 24, "key_name");
_Static_assert(offsetof(PROV_JSON_INFO, iothub_uri) == 32, "iothub_uri");
_Static_assert(offsetof(PROV_JSON_INFO, device_id) == 40, "device_id");
/* Issue 13's hook records: declared verbatim in the header, mirrored in src/ffi/types.rs (whose
 * unit test checks the same offsets). */
_Static_assert(sizeof(PROV_MQTT_REGISTRATION_INFO) == 64, "PROV_MQTT_REGISTRATION_INFO is 64 bytes");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, issued_certificate_chain) == 0, "issued_certificate_chain");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, connection_profile) == 8, "connection_profile");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, substatus) == 16, "substatus");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, etag) == 24, "etag");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, dps_status) == 32, "dps_status");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, error_code) == 40, "error_code");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, tracking_id) == 48, "tracking_id");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO, error_message) == 56, "error_message");
_Static_assert(sizeof(PROV_MQTT_REGISTRATION_INFO_HOOK) == 16, "PROV_MQTT_REGISTRATION_INFO_HOOK is 16 bytes");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO_HOOK, callback) == 0, "callback");
_Static_assert(offsetof(PROV_MQTT_REGISTRATION_INFO_HOOK, context) == 8, "context");

/* The table: 12 pointers, in the SDK's order. */
_Static_assert(sizeof(PROV_DEVICE_TRANSPORT_PROVIDER) == 12 * sizeof(void*), "12 slots");
#define SLOT(field, n) _Static_assert(offsetof(PROV_DEVICE_TRANSPORT_PROVIDER, field) == (n) * sizeof(void*), #field)
SLOT(prov_transport_create, 0);
SLOT(prov_transport_destroy, 1);
SLOT(prov_transport_open, 2);
SLOT(prov_transport_close, 3);
SLOT(prov_transport_register, 4);
SLOT(prov_transport_get_op_status, 5);
SLOT(prov_transport_dowork, 6);
SLOT(prov_transport_set_trace, 7);
SLOT(prov_transport_x509_cert, 8);
SLOT(prov_transport_trusted_cert, 9);
SLOT(prov_transport_set_proxy, 10);
SLOT(prov_transport_set_option, 11);
_Static_assert(sizeof(PROV_TRANSPORT_PROVIDER) == sizeof(PROV_DEVICE_TRANSPORT_PROVIDER), "requirement-doc alias");

/* The SDK's slot shapes, written out from the spec (not from our header): each slot's type must
 * be exactly these, or the assignments below would not compile under -Werror. */
typedef PROV_DEVICE_TRANSPORT_HANDLE (*sdk_create)(const char*, TRANSPORT_HSM_TYPE, const char*, const char*,
                                                   void (*)(PROV_DEVICE_TRANSPORT_ERROR, void*), void*);
typedef void (*sdk_destroy)(PROV_DEVICE_TRANSPORT_HANDLE);
typedef int (*sdk_open)(PROV_DEVICE_TRANSPORT_HANDLE, const char*, BUFFER_HANDLE, BUFFER_HANDLE,
                        void (*)(PROV_DEVICE_TRANSPORT_RESULT, BUFFER_HANDLE, const char*, const char*, void*), void*,
                        void (*)(PROV_DEVICE_TRANSPORT_STATUS, uint32_t, void*), void*,
                        char* (*)(const unsigned char*, size_t, const char*, void*), void*);
typedef int (*sdk_handle_only)(PROV_DEVICE_TRANSPORT_HANDLE);
typedef int (*sdk_register)(PROV_DEVICE_TRANSPORT_HANDLE, PROV_JSON_INFO* (*)(const char*, void*),
                            char* (*)(const char*, const char*, void*), void*);
typedef void (*sdk_dowork)(PROV_DEVICE_TRANSPORT_HANDLE);
typedef int (*sdk_set_trace)(PROV_DEVICE_TRANSPORT_HANDLE, bool);
typedef int (*sdk_x509)(PROV_DEVICE_TRANSPORT_HANDLE, const char*, const char*);
typedef int (*sdk_trusted)(PROV_DEVICE_TRANSPORT_HANDLE, const char*);
typedef int (*sdk_proxy)(PROV_DEVICE_TRANSPORT_HANDLE, const HTTP_PROXY_OPTIONS*);
typedef int (*sdk_option)(PROV_DEVICE_TRANSPORT_HANDLE, const char*, const void*);
typedef const PROV_DEVICE_TRANSPORT_PROVIDER* (*sdk_provider_function)(void);

static const sdk_provider_function entry_points[4] = {Prov_Device_MQTT_Protocol, Prov_Device_MQTT_WS_Protocol,
                                                      PROV_MQTT_Protocol, PROV_MQTT_WS_Protocol};
static const PROV_DEVICE_TRANSPORT_PROVIDER_FUNCTION ll_create_argument = Prov_Device_MQTT_Protocol;
static const char* const entry_names[4] = {"Prov_Device_MQTT_Protocol", "Prov_Device_MQTT_WS_Protocol",
                                           "PROV_MQTT_Protocol", "PROV_MQTT_WS_Protocol"};

TEST(abi_every_slot_of_every_table_is_set) {
    for (int i = 0; i < 4; i++) {
        const PROV_DEVICE_TRANSPORT_PROVIDER* t = entry_points[i]();
        if (t == NULL) harness_note("%s() returned NULL", entry_names[i]);
        CHECK(t != NULL);
        /* assigning each slot to the SDK's shape is the compile-time half of this test */
        sdk_create create = t->prov_transport_create;
        sdk_destroy destroy = t->prov_transport_destroy;
        sdk_open open = t->prov_transport_open;
        sdk_handle_only close = t->prov_transport_close;
        sdk_register reg = t->prov_transport_register;
        sdk_handle_only op_status = t->prov_transport_get_op_status;
        sdk_dowork dowork = t->prov_transport_dowork;
        sdk_set_trace trace = t->prov_transport_set_trace;
        sdk_x509 x509 = t->prov_transport_x509_cert;
        sdk_trusted trusted = t->prov_transport_trusted_cert;
        sdk_proxy proxy = t->prov_transport_set_proxy;
        sdk_option option = t->prov_transport_set_option;
        const void* slots[12] = {(const void*)create, (const void*)destroy, (const void*)open, (const void*)close,
                                 (const void*)reg,    (const void*)op_status, (const void*)dowork, (const void*)trace,
                                 (const void*)x509,   (const void*)trusted, (const void*)proxy, (const void*)option};
        for (int s = 0; s < 12; s++) {
            if (slots[s] == NULL) harness_note("%s(): slot %d is NULL", entry_names[i], s);
            CHECK(slots[s] != NULL);
        }
    }
}

TEST(abi_tables_are_static_and_the_aliases_agree) {
    /* The SDK returns a static table: the same pointer every call; the requirement documents'
     * names return the same tables; MQTT and WS are different tables. */
    CHECK(Prov_Device_MQTT_Protocol() == Prov_Device_MQTT_Protocol());
    CHECK(Prov_Device_MQTT_WS_Protocol() == Prov_Device_MQTT_WS_Protocol());
    CHECK(PROV_MQTT_Protocol() == Prov_Device_MQTT_Protocol());
    CHECK(PROV_MQTT_WS_Protocol() == Prov_Device_MQTT_WS_Protocol());
    CHECK(Prov_Device_MQTT_Protocol() != Prov_Device_MQTT_WS_Protocol());
    CHECK(ll_create_argument() == Prov_Device_MQTT_Protocol());
    CHECK(memcmp(Prov_Device_MQTT_Protocol(), Prov_Device_MQTT_WS_Protocol(), sizeof(PROV_DEVICE_TRANSPORT_PROVIDER)) != 0);
}

TEST(abi_create_destroy_through_every_table) {
    /* A handle made by each table is usable by the same table: create (X.509, no I/O), an
     * option, destroy; TPM is refused by every table. */
    for (int i = 0; i < 4; i++) {
        const PROV_DEVICE_TRANSPORT_PROVIDER* t = entry_points[i]();
        PROV_DEVICE_TRANSPORT_HANDLE h =
            t->prov_transport_create("localhost:1", TRANSPORT_HSM_TYPE_X509, "0ne00000000", "2021-06-01", NULL, NULL);
        CHECK(h != NULL);
        CHECK_EQ_INT(t->prov_transport_set_trace(h, true), 0);
        CHECK_EQ_INT(t->prov_transport_set_trace(h, false), 0);
        t->prov_transport_destroy(h);
        CHECK(t->prov_transport_create("localhost:1", TRANSPORT_HSM_TYPE_TPM, "0ne00000000", "2021-06-01", NULL, NULL) ==
              NULL);
    }
}
