/*
 * The host process survives what the network does to it. A C application does not ignore
 * SIGPIPE (a Rust binary does), so a write to a connection the server has closed must not raise
 * it: the SDK's sockets send with MSG_NOSIGNAL, and so must we.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "device.h"
#include "harness.h"

typedef struct {
    int listener;
    int upstream_port;
    ssize_t forwarded;
} RELAY;

/* Passes the ClientHello to the emulator and the server's whole handshake flight back, then
 * closes both sides: the client's next writes (Finished, CONNECT+SUBSCRIBE) hit a closed socket. */
static void* relay_main(void* arg) {
    RELAY* r = arg;
    int c = accept(r->listener, NULL, NULL);
    int up = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)r->upstream_port)};
    char buf[65536];
    if (c >= 0 && connect(up, (struct sockaddr*)&a, sizeof a) == 0) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n > 0 && send(up, buf, (size_t)n, MSG_NOSIGNAL) == n) {
            usleep(200000); /* the whole server flight */
            n = read(up, buf, sizeof buf);
            if (n > 0) r->forwarded = send(c, buf, (size_t)n, MSG_NOSIGNAL);
        }
    }
    if (c >= 0) close(c);
    close(up);
    return NULL;
}

static void server_closes_after_its_handshake_flight(int ws) {
    /* the default disposition, as in a C application */
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    RELAY r = {.listener = socket(AF_INET, SOCK_STREAM, 0), .upstream_port = emu_port(ws)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(bind(r.listener, (struct sockaddr*)&a, sizeof a) == 0 && listen(r.listener, 1) == 0);
    CHECK(getsockname(r.listener, (struct sockaddr*)&a, &len) == 0);
    pthread_t relay;
    CHECK(pthread_create(&relay, NULL, relay_main, &r) == 0);

    DEVICE d;
    char uri[64];
    device_init(&d, ws, ws ? "robust-sigpipe-ws" : "robust-sigpipe-mqtt");
    snprintf(uri, sizeof uri, "localhost:%d", ntohs(a.sin_port));
    d.uri = uri;
    CHECK_EQ_INT(device_create(&d), 0);
    uint32_t no_retry = 0;
    CHECK_EQ_INT(d.table->prov_transport_set_option(d.handle, "retry_max_attempts", &no_retry), 0);
    CHECK_EQ_INT(device_trust_and_open(&d), 0);
    char* log;
    int arrived = device_run_captured(&d, 30, 0.5, &log);
    pthread_join(relay, NULL);
    close(r.listener);
    /* still here: no SIGPIPE; the fault ends in the error path once, with a line saying why */
    CHECK(r.forwarded > 0);
    CHECK_ERROR_PATH_ONCE(arrived, &d);
    CHECK(strstr(log, "prov_mqtt_transport error") != NULL);
    free(log);
    device_finish(&d);
}

TEST(robustness_no_sigpipe_when_the_server_closes_mid_handshake_mqtt) { server_closes_after_its_handshake_flight(0); }
TEST(robustness_no_sigpipe_when_the_server_closes_mid_handshake_ws) { server_closes_after_its_handshake_flight(1); }
