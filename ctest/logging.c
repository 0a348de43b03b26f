/* Where the library's log lines go (README, "Where log lines go"), for the shared and the static
 * library. Built four times (ctest/CMakeLists.txt):
 *
 *   PMT_SDK_LOGGER=1  the program links the xlogging pair (fake_xlogging.c, after the library, as
 *                     an SDK application links c-shared-utility) and installs a capturing logger:
 *                     every line arrives there, errors as AZ_LOG_ERROR, the reconnect notice as
 *                     AZ_LOG_INFO, with our file and line, LOG_LINE and "%s"; nothing on stderr.
 *   PMT_SDK_LOGGER=0  no xlogging in the process: errors on stderr, no info line.
 *
 * The lines come from a refused create (an error without a handle) and a registration against a
 * closed port with one retry (a reconnect notice, then the error); the registration id, which
 * every line of the handle names, carries '%' conversions: they must be printed, not obeyed. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "prov_mqtt_transport.h"
#if PMT_SDK_LOGGER
#include "fake_xlogging.h"
#endif

static int failures;
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stdout, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define MAX_LINES 256
typedef struct {
    int category;
    char file[256];
    int line;
    unsigned int options;
    int format_is_percent_s;
    char text[1024];
} CAPTURED;
static CAPTURED captured[MAX_LINES];
static int captured_count;

#if PMT_SDK_LOGGER
static void capture(LOG_CATEGORY category, const char* file, const char* func, int line, unsigned int options,
                    const char* format, ...) {
    (void)func;
    if (captured_count == MAX_LINES) return;
    CAPTURED* c = &captured[captured_count++];
    c->category = (int)category;
    snprintf(c->file, sizeof c->file, "%s", file ? file : "(null)");
    c->line = line;
    c->options = options;
    c->format_is_percent_s = format != NULL && strcmp(format, "%s") == 0;
    va_list ap;
    va_start(ap, format);
    vsnprintf(c->text, sizeof c->text, format, ap);
    va_end(ap);
}
#endif

static __attribute__((unused)) int any_captured(int category, const char* needle) {
    for (int i = 0; i < captured_count; i++)
        if (captured[i].category == category && strstr(captured[i].text, needle) != NULL) return 1;
    return 0;
}

static int data_count;
static PROV_DEVICE_TRANSPORT_RESULT data_result;
static void on_data(PROV_DEVICE_TRANSPORT_RESULT result, BUFFER_HANDLE key, const char* hub, const char* device_id,
                    void* ctx) {
    (void)key, (void)hub, (void)device_id, (void)ctx;
    data_count++;
    data_result = result;
}
static void on_status(PROV_DEVICE_TRANSPORT_STATUS status, uint32_t retry_interval, void* ctx) {
    (void)status, (void)retry_interval, (void)ctx;
}
static char* on_challenge(const unsigned char* nonce, size_t nonce_len, const char* key_name, void* ctx) {
    (void)nonce, (void)nonce_len, (void)key_name, (void)ctx;
    return strdup("SharedAccessSignature sr=x&sig=y&se=1&skn=");
}

/* A loopback port nobody listens on. */
static int closed_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr*)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr*)&a, &len) != 0) {
        perror("closed_port");
        exit(2);
    }
    close(s);
    return ntohs(a.sin_port);
}

static char* read_all(FILE* f) {
    fflush(f);
    long n = ftell(f);
    char* text = calloc(1, (size_t)n + 1);
    rewind(f);
    if (text != NULL && n > 0 && fread(text, 1, (size_t)n, f) != (size_t)n) text[0] = '\0';
    return text;
}

int main(void) {
#if PMT_SDK_LOGGER
    xlogging_set_log_function(capture);
#endif
    /* stderr into a file, to see what reached it */
    FILE* err = tmpfile();
    if (err == NULL) return 2;
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(err), 2);

    const PROV_DEVICE_TRANSPORT_PROVIDER* t = Prov_Device_MQTT_Protocol();
    CHECK(t->prov_transport_create(NULL, TRANSPORT_HSM_TYPE_SYMM_KEY, "0ne00000000", "2021-06-01", NULL, NULL) ==
          NULL);

    char uri[64];
    snprintf(uri, sizeof uri, "127.0.0.1:%d", closed_port());
    PROV_DEVICE_TRANSPORT_HANDLE h =
        t->prov_transport_create(uri, TRANSPORT_HSM_TYPE_SYMM_KEY, "0ne00000000", "2021-06-01", NULL, NULL);
    CHECK(h != NULL);
    uint32_t one = 1;
    CHECK(t->prov_transport_set_option(h, "retry_max_attempts", &one) == 0);
    CHECK(t->prov_transport_set_option(h, "retry_initial_ms", &one) == 0);
    CHECK(t->prov_transport_open(h, "log-%s%n-device", NULL, NULL, on_data, NULL, on_status, NULL, on_challenge, NULL) ==
          0);
    for (int i = 0; i < 1000 && data_count == 0; i++) {
        t->prov_transport_dowork(h);
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    CHECK(data_count == 1);
    CHECK(data_result == PROV_DEVICE_TRANSPORT_RESULT_ERROR);
    t->prov_transport_close(h);
    t->prov_transport_destroy(h);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char* on_stderr = read_all(err);
    fclose(err);
    if (on_stderr == NULL) return 2;

#if PMT_SDK_LOGGER
    CHECK(on_stderr[0] == '\0'); /* nothing around the application's logger */
    CHECK(captured_count >= 3);
    for (int i = 0; i < captured_count; i++) {
        CAPTURED* c = &captured[i];
        CHECK(c->category == AZ_LOG_ERROR || c->category == AZ_LOG_INFO);
        CHECK(c->options == LOG_LINE);
        CHECK(c->format_is_percent_s);
        CHECK(strncmp(c->file, "src/", 4) == 0 && strstr(c->file, ".rs") != NULL);
        CHECK(c->line > 0);
        CHECK(strncmp(c->text, "prov_mqtt_transport", 19) == 0);
    }
    CHECK(any_captured(AZ_LOG_ERROR, "prov_transport_create"));
    CHECK(any_captured(AZ_LOG_INFO, "[log-%s%n-device]: cannot connect")); /* '%' printed as given */
    CHECK(any_captured(AZ_LOG_INFO, "reconnecting"));
    CHECK(any_captured(AZ_LOG_ERROR, "[log-%s%n-device]: giving up"));
    CHECK(!any_captured(AZ_LOG_ERROR, "reconnecting"));
#else
    CHECK(captured_count == 0);
    CHECK(strstr(on_stderr, "prov_mqtt_transport error: prov_transport_create") != NULL);
    CHECK(strstr(on_stderr, "prov_mqtt_transport error [log-%s%n-device]: giving up") != NULL);
    CHECK(strstr(on_stderr, " info") == NULL); /* info lines go to an SDK logger only */
    CHECK(strstr(on_stderr, "reconnecting") == NULL);
#endif
    printf("%d line(s) to the SDK logger, stderr:\n%s", captured_count, on_stderr);
    for (int i = 0; i < captured_count; i++)
        printf("  [%d] %s:%d %s\n", captured[i].category, captured[i].file, captured[i].line, captured[i].text);
    free(on_stderr);
    if (failures) printf("%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
