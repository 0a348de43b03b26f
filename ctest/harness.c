/* The harness behind harness.h: test registry, main, emulator access, stderr capture. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 256

static struct {
    const char* name;
    TEST_FN fn;
} tests[MAX_TESTS];
static int test_count;
static int failed;
static const char* current;

void harness_register(const char* name, TEST_FN fn) {
    if (test_count == MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests\n", MAX_TESTS);
        exit(2);
    }
    tests[test_count].name = name;
    tests[test_count].fn = fn;
    test_count++;
}

void harness_fail(const char* file, int line, const char* what) {
    failed = 1;
    fprintf(stdout, "FAIL %s: %s:%d: %s\n", current, file, line, what);
    fflush(stdout);
}

void harness_note(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  note: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    fflush(stdout);
    va_end(ap);
}

int harness_private_loopback(void) {
    if (unshare(CLONE_NEWNET) != 0) {
        harness_note("no network namespace of its own (unshare: %s): using the host's loopback", strerror(errno));
        return 0;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int up = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    if (!up) harness_note("cannot bring up lo in the new network namespace: %s", strerror(errno));
    if (s >= 0) close(s);
    return up;
}

int main(int argc, char** argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < test_count; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s TEST_NAME | --list\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < test_count; i++) {
        if (strcmp(tests[i].name, argv[1]) == 0) {
            current = tests[i].name;
            double t0 = now_s();
            tests[i].fn();
            printf("%s %s (%.2f s)\n", failed ? "FAIL" : "PASS", current, now_s() - t0);
            return failed ? 1 : 0;
        }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const PROV_DEVICE_TRANSPORT_PROVIDER* table_for(int ws) {
    return ws ? Prov_Device_MQTT_WS_Protocol() : Prov_Device_MQTT_Protocol();
}

char* read_text_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 4096, len = 0;
    char* s = malloc(cap);
    size_t n;
    while (s != NULL && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char* bigger = realloc(s, cap * 2);
            if (bigger == NULL) { free(s); s = NULL; break; }
            s = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (s != NULL) s[len] = '\0';
    return s;
}

/* --- the emulator's facts, from $PMT_EMU_DIR/env ------------------------------------------ */

#define MAX_DEVICES 40

static struct {
    int loaded;
    char dir[1024];
    char scope[64];
    char group_key[128];
    char emulator[1024];
    char timeline[1100];
    char proxy_log_path[1100];
    char proxy_user[64];
    char proxy_password[64];
    int mqtt_port, ws_port, proxy_port;
    char uri[2][64];
    char* root_ca;
    char* foreign_ca;
    char id[MAX_DEVICES][16];
    char* cert[MAX_DEVICES];
    char* key[MAX_DEVICES];
} emu;

static void die(const char* what) {
    fprintf(stdout, "FAIL %s: emulator fixture: %s (run through ctest, which starts the emulator)\n",
            current ? current : "?", what);
    exit(1);
}

static void load(void) {
    if (emu.loaded) return;
    const char* dir = getenv("PMT_EMU_DIR");
    if (dir == NULL) die("PMT_EMU_DIR is not set");
    snprintf(emu.dir, sizeof emu.dir, "%s", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/env", dir);
    FILE* f = fopen(path, "r");
    if (f == NULL) die("no env file in PMT_EMU_DIR");
    char line[1200];
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char* eq = strchr(line, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        if (strcmp(k, "MQTT_PORT") == 0) emu.mqtt_port = atoi(v);
        else if (strcmp(k, "WS_PORT") == 0) emu.ws_port = atoi(v);
        else if (strcmp(k, "PROXY_PORT") == 0) emu.proxy_port = atoi(v);
        else if (strcmp(k, "SCOPE") == 0) snprintf(emu.scope, sizeof emu.scope, "%s", v);
        else if (strcmp(k, "GROUP_KEY") == 0) snprintf(emu.group_key, sizeof emu.group_key, "%s", v);
        else if (strcmp(k, "EMULATOR") == 0) snprintf(emu.emulator, sizeof emu.emulator, "%s", v);
        else if (strcmp(k, "PROXY_USER") == 0) snprintf(emu.proxy_user, sizeof emu.proxy_user, "%s", v);
        else if (strcmp(k, "PROXY_PASSWORD") == 0) snprintf(emu.proxy_password, sizeof emu.proxy_password, "%s", v);
    }
    fclose(f);
    if (emu.mqtt_port == 0 || emu.ws_port == 0 || emu.scope[0] == '\0') die("env file incomplete");
    snprintf(emu.timeline, sizeof emu.timeline, "%s/timeline.jsonl", dir);
    snprintf(emu.proxy_log_path, sizeof emu.proxy_log_path, "%s/tinyproxy.log", dir);
    snprintf(emu.uri[0], sizeof emu.uri[0], "localhost:%d", emu.mqtt_port);
    snprintf(emu.uri[1], sizeof emu.uri[1], "localhost:%d", emu.ws_port);
    snprintf(path, sizeof path, "%s/certs/root-ca.pem", dir);
    if ((emu.root_ca = read_text_file(path)) == NULL) die("no certs/root-ca.pem");
    snprintf(path, sizeof path, "%s/foreign/root-ca.pem", dir);
    if ((emu.foreign_ca = read_text_file(path)) == NULL) die("no foreign/root-ca.pem");
    emu.loaded = 1;
}

const char* emu_scope(void) { load(); return emu.scope; }
const char* emu_uri(int ws) { load(); return emu.uri[ws ? 1 : 0]; }
int emu_port(int ws) { load(); return ws ? emu.ws_port : emu.mqtt_port; }
const char* emu_root_ca(void) { load(); return emu.root_ca; }
const char* emu_foreign_ca(void) { load(); return emu.foreign_ca; }
int proxy_port(void) { load(); if (emu.proxy_port == 0) die("tinyproxy was not started (is it installed?)"); return emu.proxy_port; }
const char* proxy_user(void) { load(); return emu.proxy_user; }
const char* proxy_password(void) { load(); return emu.proxy_password; }
char* proxy_log(void) { load(); char* s = read_text_file(emu.proxy_log_path); return s ? s : strdup(""); }

static void load_device(int n) {
    load();
    if (n < 0 || n >= MAX_DEVICES) die("x509 device index out of range");
    if (emu.cert[n] != NULL) return;
    snprintf(emu.id[n], sizeof emu.id[n], "x509-%d", n);
    char path[1200];
    snprintf(path, sizeof path, "%s/certs/device-%s.pem", emu.dir, emu.id[n]);
    if ((emu.cert[n] = read_text_file(path)) == NULL) die("missing device certificate");
    snprintf(path, sizeof path, "%s/certs/device-%s-key.pem", emu.dir, emu.id[n]);
    if ((emu.key[n] = read_text_file(path)) == NULL) die("missing device key");
}

const char* emu_x509_id(int n) { load_device(n); return emu.id[n]; }
const char* emu_x509_cert(int n) { load_device(n); return emu.cert[n]; }
const char* emu_x509_key(int n) { load_device(n); return emu.key[n]; }

char* emu_sas_token(const char* registration_id) {
    load();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' sas --scope '%s' --registration-id '%s' --key '%s' --group", emu.emulator,
             emu.scope, registration_id, emu.group_key);
    FILE* p = popen(cmd, "r");
    if (p == NULL) die("cannot run dps-emulator sas");
    char token[1024] = "";
    if (fgets(token, sizeof token, p) == NULL) token[0] = '\0';
    pclose(p);
    token[strcspn(token, "\n")] = '\0';
    if (strncmp(token, "SharedAccessSignature ", 22) != 0) die("dps-emulator sas printed no token");
    return strdup(token);
}

int count_of(const char* haystack, const char* needle) {
    int n = 0;
    size_t len = strlen(needle);
    if (haystack == NULL || len == 0) return 0;
    for (const char* at = strstr(haystack, needle); at != NULL; at = strstr(at + len, needle)) n++;
    return n;
}

int connection_count(const char* connections) { return count_of(connections, ",\"events\":["); }

char* emu_connections(const char* registration_id, int min_connections, double timeout_s) {
    load();
    char key[256];
    snprintf(key, sizeof key, "\"regid\":\"%s\",\"events\"", registration_id);
    double deadline = now_s() + timeout_s;
    for (;;) {
        char* all = read_text_file(emu.timeline);
        size_t cap = 1, n = 0;
        char* out = calloc(1, 1);
        for (char* line = all ? strtok(all, "\n") : NULL; line != NULL && out != NULL; line = strtok(NULL, "\n")) {
            if (strstr(line, key) == NULL) continue;
            size_t len = strlen(line);
            char* bigger = realloc(out, cap + len + 1);
            if (bigger == NULL) { free(out); out = NULL; break; }
            out = bigger;
            memcpy(out + n, line, len);
            n += len;
            out[n++] = '\n';
            out[n] = '\0';
            cap += len + 1;
        }
        free(all);
        if (out == NULL) die("out of memory");
        if (connection_count(out) >= min_connections || now_s() >= deadline) return out;
        free(out);
        sleep_ms(50);
    }
}

int emu_connection_count(const char* registration_id, int min_connections, double timeout_s) {
    char* conns = emu_connections(registration_id, min_connections, timeout_s);
    int n = connection_count(conns);
    free(conns);
    return n;
}

int emu_count_of(const char* registration_id, int min_connections, double timeout_s, const char* needle) {
    char* conns = emu_connections(registration_id, min_connections, timeout_s);
    int n = count_of(conns, needle);
    free(conns);
    return n;
}

/* --- stderr capture ----------------------------------------------------------------------- */

static int saved_stderr = -1;
static char capture_path[64];

void capture_stderr_begin(void) {
    snprintf(capture_path, sizeof capture_path, "/tmp/pmt-stderr-XXXXXX");
    int fd = mkstemp(capture_path);
    if (fd < 0) die("mkstemp");
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

char* capture_stderr_end(void) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    char* text = read_text_file(capture_path);
    unlink(capture_path);
    /* Show what was captured, so a failing test's log is in the CTest output. */
    if (text != NULL) fputs(text, stderr);
    return text ? text : strdup("");
}
