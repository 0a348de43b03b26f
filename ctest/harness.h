/*
 * The C test harness: a registry of named tests (one process runs one test, so CTest can run
 * them one by one, in parallel, and under valgrind), checks that stop the test on failure, and
 * access to the DPS emulator the CTest fixture started (ctest/emulator.sh).
 */
#ifndef PMT_HARNESS_H
#define PMT_HARNESS_H

#include <stddef.h>

#include "prov_mqtt_transport.h"

typedef void (*TEST_FN)(void);
void harness_register(const char* name, TEST_FN fn);
void harness_fail(const char* file, int line, const char* what);
void harness_note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* Moves the calling thread, and the threads it starts from now on, into a network namespace of
 * its own with lo up, where every port is free (the host's may be taken). Returns 1 when done;
 * 0, with a note, when the process may not (no CAP_SYS_ADMIN) and stays on the host's. */
int harness_private_loopback(void);

/* TEST(name) { ... } defines and registers a test; CMake reads the names from the sources. */
#define TEST(name)                                                                       \
    static void test_##name(void);                                                       \
    __attribute__((constructor)) static void register_##name(void) { harness_register(#name, test_##name); } \
    static void test_##name(void)

/* A failed check ends the test (the process reports failure when the test returns). */
#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond)) { harness_fail(__FILE__, __LINE__, #cond); return; } \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                     \
    do {                                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                         \
        if (check_a_ != check_b_) {                                                            \
            harness_note("%s = %lld, expected %s = %lld", #a, check_a_, #b, check_b_);         \
            harness_fail(__FILE__, __LINE__, #a " == " #b);                                    \
            return;                                                                            \
        }                                                                                      \
    } while (0)
#define CHECK_STR(a, b)                                                                        \
    do {                                                                                       \
        const char *check_a_ = (a), *check_b_ = (b);                                           \
        if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) {         \
            harness_note("%s = \"%s\", expected \"%s\"", #a, check_a_ ? check_a_ : "(null)",  \
                         check_b_ ? check_b_ : "(null)");                                      \
            harness_fail(__FILE__, __LINE__, #a " == " #b);                                    \
            return;                                                                            \
        }                                                                                      \
    } while (0)

/* Wall-clock seconds (monotonic) and sleeping. */
double now_s(void);
void sleep_ms(int ms);

/* The two tables, by transport. */
const PROV_DEVICE_TRANSPORT_PROVIDER* table_for(int ws);

/* --- the emulator started by the fixture ------------------------------------------------- */
const char* emu_scope(void);
/* "localhost:<port>" of the MQTT (ws = 0) or WebSocket (ws = 1) listener. */
const char* emu_uri(int ws);
int emu_port(int ws);
/* PEM text of the emulator's root CA, and of a CA that did not sign anything it serves. */
const char* emu_root_ca(void);
const char* emu_foreign_ca(void);
/* Certificate chain and key of x509 device n (registration id "x509-<n>", 0 <= n < 40). */
const char* emu_x509_id(int n);
const char* emu_x509_cert(int n);
const char* emu_x509_key(int n);
/* A SAS token for a registration id, signed with the emulator's group key (malloc'ed). */
char* emu_sas_token(const char* registration_id);
/* The tinyproxy started by the fixture: port, and the credentials it requires. */
int proxy_port(void);
const char* proxy_user(void);
const char* proxy_password(void);
/* Lines tinyproxy logged so far (malloc'ed text). */
char* proxy_log(void);

/* The timeline the emulator writes: one JSON line per closed connection. Waits up to
 * timeout_s for at least min_connections lines of this registration id, and returns them
 * joined by '\n' (malloc'ed; "" when none). */
char* emu_connections(const char* registration_id, int min_connections, double timeout_s);
/* How many times needle occurs in haystack. */
int count_of(const char* haystack, const char* needle);
/* Number of connection lines in a text returned by emu_connections. */
int connection_count(const char* connections);
/* connection_count, and count_of needle, in emu_connections(registration_id, min, timeout_s). */
int emu_connection_count(const char* registration_id, int min_connections, double timeout_s);
int emu_count_of(const char* registration_id, int min_connections, double timeout_s, const char* needle);

/* --- stderr capture (the library logs there) --------------------------------------------- */
void capture_stderr_begin(void);
/* Stops capturing; returns what was written (malloc'ed). */
char* capture_stderr_end(void);

/* malloc'ed copy of a file's text, NULL when it cannot be read. */
char* read_text_file(const char* path);

#endif
