/*
 * The library's threads, probed as device applications run: fork() and daemon(3) after a
 * registration and in the middle of one, an application that routes SIGTERM to its own sigwait
 * thread, and pthread_create failing (pthread_shim.h) when the I/O thread or a name-resolution
 * thread is needed, and destroy with a resolver thread still ending. README "Threads" says what
 * the library promises.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device.h"
#include "harness.h"
#include "pthread_shim.h"

/* One registration end to end on a fresh handle; 1 when assigned. */
static int register_once(int ws, const char* uri, const char* id, double* took) {
    DEVICE d;
    device_init(&d, ws, id);
    if (uri != NULL) d.uri = uri;
    double t0 = now_s();
    int ok = device_register(&d, 60) && d.data_count == 1;
    if (took != NULL) *took = now_s() - t0;
    device_finish(&d);
    return ok;
}

/* The exit status of child `pid`, or -1 when it did not end normally within timeout_s (then it
 * is killed). */
static int wait_child(pid_t pid, double timeout_s) {
    double deadline = now_s() + timeout_s;
    int status;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) break;
        if (got < 0 && errno != EINTR) return -1;
        if (now_s() > deadline) {
            harness_note("child %d still running after %.0f s: killed", (int)pid, timeout_s);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(20);
    }
    if (WIFSIGNALED(status)) harness_note("child %d killed by signal %d", (int)pid, WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* fork() with stdio flushed, so nothing buffered is written twice. */
static pid_t fork_flushed(void) {
    fflush(NULL);
    return fork();
}

/* --- fork and daemon(3) after a registration ---------------------------------------------- */

static void fork_then_register(int ws) {
    double took;
    CHECK(register_once(ws, NULL, ws ? "process-fork-parent-ws" : "process-fork-parent-mqtt", &took));
    pid_t pid = fork_flushed();
    CHECK(pid >= 0);
    if (pid == 0) {
        int ok = register_once(ws, NULL, ws ? "process-fork-child-ws" : "process-fork-child-mqtt", &took);
        printf("  note: child registered: %s in %.2f s\n", ok ? "yes" : "no", took);
        fflush(stdout);
        _exit(ok ? 0 : 1);
    }
    CHECK_EQ_INT(wait_child(pid, 90), 0);
    /* and the parent is as it was */
    CHECK(register_once(ws, NULL, ws ? "process-fork-parent-again-ws" : "process-fork-parent-again-mqtt", &took));
}

TEST(process_fork_child_registers_after_the_parent_did_mqtt) { fork_then_register(0); }
TEST(process_fork_child_registers_after_the_parent_did_ws) { fork_then_register(1); }

/* "Provision in the foreground, then daemonize": the daemon is the grandchild; this process is
 * its subreaper, so it can wait for it and see its exit status (a leak under valgrind too). */
TEST(process_daemon_registers_after_a_foreground_registration) {
    double took;
    CHECK(register_once(0, NULL, "process-daemon-foreground", &took));
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork_flushed();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (daemon(1, 1) != 0) _exit(2); /* nochdir, noclose: keep the test's output */
        int ok = register_once(0, NULL, "process-daemon", &took);
        char line[64];
        int n = snprintf(line, sizeof line, "%d %d %.2f\n", (int)getpid(), ok, took);
        if (write(fds[1], line, (size_t)n) != n) _exit(3);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    CHECK_EQ_INT(wait_child(pid, 10), 0); /* daemon(3)'s parent half exits at once */
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    CHECK(poll(&p, 1, 90000) == 1);
    char line[64] = "";
    ssize_t n = read(fds[0], line, sizeof line - 1);
    close(fds[0]);
    CHECK(n > 0);
    line[n] = '\0';
    int daemon_pid = 0, ok = 0;
    CHECK(sscanf(line, "%d %d %lf", &daemon_pid, &ok, &took) == 3);
    harness_note("daemon %d registered: %s in %.2f s", daemon_pid, ok ? "yes" : "no", took);
    CHECK(ok);
    CHECK_EQ_INT(wait_child(daemon_pid, 60), 0);
}

/* --- fork in the middle of a registration -------------------------------------------------- */

/* The parent forks while its connection is being set up (connected = 0) or after CONNECTED,
 * with the register request on the wire (connected = 1). The child closes and destroys the
 * handle it inherited (which must not touch the parent's connection) and registers anew; the
 * parent's registration completes on its one connection. */
static void fork_mid_registration(int ws, int connected) {
    char id[64];
    /* the pid makes the id this run's own in the emulator's timeline (ctest --repeat) */
    snprintf(id, sizeof id, "process-fork-mid-%s-%s-%d", connected ? "connected" : "connecting", ws ? "ws" : "mqtt",
             (int)getpid());
    /* An IP literal: no name lookup runs in the parent, so the fork cannot land inside glibc's
     * getaddrinfo, whose own locks would stay held in the child (README "Threads", fork): what
     * this test proves is that the library's state and locks do not stop the child. */
    char literal[64];
    snprintf(literal, sizeof literal, "127.0.0.1:%d", emu_port(ws));
    DEVICE d;
    device_init(&d, ws, id);
    d.uri = literal;
    CHECK_EQ_INT(device_start(&d), 0);
    if (connected) {
        CHECK(device_run_until_connected(&d, 30));
    } else {
        device_step(&d);
    }
    pid_t pid = fork_flushed();
    CHECK(pid >= 0);
    if (pid == 0) {
        double t0 = now_s();
        device_finish(&d); /* the inherited handle */
        double finish = now_s() - t0;
        char child_id[80];
        snprintf(child_id, sizeof child_id, "%s-child", id);
        double took;
        int ok = register_once(ws, literal, child_id, &took);
        printf("  note: child: inherited handle destroyed in %.3f s, registered anew: %s in %.2f s\n", finish,
               ok ? "yes" : "no", took);
        fflush(stdout);
        _exit(ok && finish < 1.0 ? 0 : 1);
    }
    CHECK_RUN_OK(&d, 60);
    CHECK_EQ_INT(d.data_count, 1);
    CHECK_EQ_INT(d.wrong_thread, 0);
    device_finish(&d);
    CHECK_EQ_INT(wait_child(pid, 90), 0);
    /* one connection, undisturbed: one CONNECT, one DISCONNECT (the parent's, at close) */
    char* conns = emu_connections(id, 1, 10);
    CHECK_EQ_INT(connection_count(conns), 1);
    CHECK_EQ_INT(count_of(conns, "\"dir\":\"in\",\"packet\":\"CONNECT\""), 1);
    CHECK_EQ_INT(count_of(conns, "\"dir\":\"in\",\"packet\":\"DISCONNECT\""), 1);
    free(conns);
}

TEST(process_fork_while_connecting_parent_completes_child_registers_anew_mqtt) { fork_mid_registration(0, 0); }
TEST(process_fork_while_connecting_parent_completes_child_registers_anew_ws) { fork_mid_registration(1, 0); }
TEST(process_fork_after_connected_parent_completes_child_registers_anew_mqtt) { fork_mid_registration(0, 1); }
TEST(process_fork_after_connected_parent_completes_child_registers_anew_ws) { fork_mid_registration(1, 1); }

/* --- signals -------------------------------------------------------------------------------- */

#define SIGTERMS 20
static atomic_int sigterms_taken;

static void* sigwait_main(void* arg) {
    const sigset_t* set = arg;
    for (int i = 0; i < SIGTERMS; i++) {
        int sig = 0;
        if (sigwait(set, &sig) != 0 || sig != SIGTERM) break;
        atomic_fetch_add(&sigterms_taken, 1);
    }
    return NULL;
}

/* The application blocks nothing while it registers, then routes SIGTERM to a sigwait thread
 * (block it in main, start the thread). A library thread that left SIGTERM unblocked would get
 * some of them, and its default action ends the process. */
TEST(process_sigterm_reaches_the_applications_sigwait_thread) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    CHECK(signal(SIGTERM, SIG_DFL) != SIG_ERR);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &term, NULL) == 0);
    double took;
    CHECK(register_once(0, NULL, "process-sigterm", &took));

    CHECK(pthread_sigmask(SIG_BLOCK, &term, NULL) == 0);
    pthread_t waiter;
    CHECK(pthread_create(&waiter, NULL, sigwait_main, &term) == 0);
    /* one at a time: a second SIGTERM sent while one is pending would merge with it */
    for (int i = 0; i < SIGTERMS; i++) {
        CHECK(kill(getpid(), SIGTERM) == 0);
        double deadline = now_s() + 10;
        while (atomic_load(&sigterms_taken) < i + 1 && now_s() < deadline) sleep_ms(1);
        CHECK_EQ_INT(atomic_load(&sigterms_taken), i + 1);
    }
    pthread_join(waiter, NULL);
    /* and the library still works, its threads still out of the way */
    CHECK(register_once(1, NULL, "process-sigterm-after", &took));
    harness_note("sigwait took %d of %d SIGTERMs", atomic_load(&sigterms_taken), SIGTERMS);
}

/* --- thread start failures ------------------------------------------------------------------ */

/* Library threads alive now whose name starts with `prefix` (threads name themselves in
 * /proc/self/task/N/comm). */
static int threads_named(const char* prefix) {
    DIR* dir = opendir("/proc/self/task");
    if (dir == NULL) return -1;
    int n = 0;
    struct dirent* e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE* f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(comm, sizeof comm, f) != NULL && strncmp(comm, prefix, strlen(prefix)) == 0) n++;
        fclose(f);
    }
    closedir(dir);
    return n;
}

/* A registration that fails at once: no retries, so the first failure is the error path. */
static void register_expecting_error(const char* uri, const char* id, const char* expected_line) {
    DEVICE d;
    device_init(&d, 0, id);
    d.uri = uri;
    CHECK_EQ_INT(device_create(&d), 0);
    uint32_t no_retry = 0;
    CHECK_EQ_INT(d.table->prov_transport_set_option(d.handle, "retry_max_attempts", &no_retry), 0);
    CHECK_EQ_INT(d.table->prov_transport_trusted_cert(d.handle, d.trusted_ca), 0);
    capture_stderr_begin();
    double t0 = now_s();
    int opened = device_open(&d) == 0;
    int arrived = opened && device_run(&d, 40);
    double took = now_s() - t0;
    char* log = capture_stderr_end();
    harness_note("registration with a failed thread start ended in %.2f s", took);
    CHECK(opened);
    CHECK(arrived);
    CHECK(took < 10); /* at once, not after the 30 s reply timeout */
    CHECK_EQ_INT(d.result, PROV_DEVICE_TRANSPORT_RESULT_ERROR);
    CHECK_EQ_INT(d.data_count, 1);
    CHECK(strstr(log, expected_line) != NULL);
    free(log);
    device_finish(&d);
}

TEST(process_io_thread_start_failure_fails_one_registration_not_the_next) {
    pthread_shim_fail(0, 1); /* the next pthread_create: the I/O thread's */
    register_expecting_error(emu_uri(0), "process-thread-io-fails", "cannot start the library's I/O thread");
    CHECK_EQ_INT(pthread_shim_failures(), 1);
    double took;
    CHECK(register_once(0, NULL, "process-thread-io-next", &took));
    CHECK(register_once(1, NULL, "process-thread-io-next-ws", &took));
}

TEST(process_io_thread_start_failure_is_retried_within_the_budget) {
    pthread_shim_fail(0, 1);
    double took;
    CHECK(register_once(0, NULL, "process-thread-io-retried", &took));
    CHECK_EQ_INT(pthread_shim_failures(), 1);
    harness_note("registered in %.2f s despite the failed start", took);
}

TEST(process_resolver_thread_start_failure_is_a_clear_error_at_once) {
    /* An IP literal is not looked up: the first registration starts the I/O thread only. */
    char literal[64];
    snprintf(literal, sizeof literal, "127.0.0.1:%d", emu_port(0));
    double took;
    CHECK(register_once(0, literal, "process-thread-dns-literal", &took));
    CHECK_EQ_INT(pthread_shim_calls(), 1);

    pthread_shim_fail(0, 1); /* the next: the resolver thread for "localhost" */
    register_expecting_error(emu_uri(0), "process-thread-dns-fails", "cannot start the library's name-resolution thread");
    CHECK_EQ_INT(pthread_shim_failures(), 1);

    int before = pthread_shim_calls();
    CHECK(register_once(0, NULL, "process-thread-dns-next", &took));
    CHECK_EQ_INT(pthread_shim_calls(), before + 1); /* one resolver thread */
    CHECK(register_once(1, NULL, "process-thread-dns-next-ws", &took));
    CHECK(register_once(0, NULL, "process-thread-dns-again", &took));
    /* "localhost" is looked up once per port (30 s reuse); the WSS port was a second name */
    CHECK_EQ_INT(pthread_shim_calls(), before + 2);
    /* resolver threads end when they have nothing to do */
    double deadline = now_s() + 5;
    while (threads_named("prov-mqtt-dns") != 0 && now_s() < deadline) sleep_ms(10);
    CHECK_EQ_INT(threads_named("prov-mqtt-dns"), 0);
    CHECK_EQ_INT(threads_named("prov-mqtt-io"), 1);
}

/* An application may exit the moment destroy returns, and no resolver thread of the library's
 * may still be ending then: one caught half way by the exit leaves glibc's resolver context
 * lost (valgrind reports it). Here every thread lingers 50 ms after its work, and each handle is
 * destroyed as soon as its connection arrives, right after its name was looked up. */
TEST(process_destroy_leaves_no_resolver_thread_ending) {
    char literal[64];
    snprintf(literal, sizeof literal, "127.0.0.1:%d", emu_port(0));
    double took;
    CHECK(register_once(0, literal, "process-dns-settle-literal", &took)); /* the I/O thread only */
    int before = pthread_shim_running();
    pthread_shim_linger(50);
    for (int i = 0; i < 5; i++) {
        int listener = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        CHECK(bind(listener, (struct sockaddr*)&a, sizeof a) == 0 && listen(listener, 4) == 0 &&
              getsockname(listener, (struct sockaddr*)&a, &len) == 0);
        char uri[64]; /* a name, looked up anew for each port */
        snprintf(uri, sizeof uri, "localhost:%d", ntohs(a.sin_port));
        DEVICE d;
        device_init(&d, 0, "process-dns-settle");
        d.uri = uri;
        CHECK_EQ_INT(device_start(&d), 0);
        struct pollfd fd = {listener, POLLIN, 0};
        int accepted = 0;
        for (double end = now_s() + 10; !accepted && now_s() < end;) {
            device_step(&d);
            accepted = poll(&fd, 1, 5) > 0;
        }
        CHECK(accepted);
        device_finish(&d);
        CHECK_EQ_INT(pthread_shim_running(), before);
        close(listener);
    }
}

/* KB of this process's mappings of the library's file that are resident (/proc/self/smaps). */
static long library_resident_kb(void) {
    FILE* f = fopen("/proc/self/smaps", "r");
    if (f == NULL) return -1;
    char line[512];
    int ours = 0;
    long kb = 0, v;
    unsigned long a, b;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, ' ') > strchr(line, '-'))
            ours = strstr(line, "libprov_mqtt_transport.so") != NULL;
        else if (ours && sscanf(line, "Rss: %ld kB", &v) == 1)
            kb += v;
    }
    fclose(f);
    return kb;
}

/* A device that registers once at boot runs on for months: once the last handle is destroyed,
 * the library's code and read-only pages leave the process's resident set (src/net/release.rs,
 * 3 s later), and a registration after that maps them again and works. */
static void pages_leave_after_the_last_destroy(int ws) {
    double took;
    CHECK(register_once(ws, NULL, ws ? "process-release-ws" : "process-release-mqtt", &took));
    long destroyed = library_resident_kb();
    harness_note("library resident right after destroy: %ld KB", destroyed);
    CHECK(destroyed > 256);
    long now = destroyed;
    for (double deadline = now_s() + 20; now_s() < deadline && now > destroyed / 2; sleep_ms(100))
        now = library_resident_kb();
    harness_note("library resident after the release: %ld KB", now);
    CHECK(now <= destroyed / 2);
    CHECK(register_once(ws, NULL, ws ? "process-release-again-ws" : "process-release-again-mqtt", &took));
}

TEST(process_library_pages_leave_the_resident_set_after_the_last_destroy_mqtt) { pages_leave_after_the_last_destroy(0); }
TEST(process_library_pages_leave_the_resident_set_after_the_last_destroy_ws) { pages_leave_after_the_last_destroy(1); }
