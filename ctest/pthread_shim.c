/* The pthread_create of pthread_shim.h. */
#define _GNU_SOURCE
#include "pthread_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_int skip_left, fail_left, calls, failures, linger_ms, running;

void pthread_shim_fail(int skip, int fail) {
    atomic_store(&skip_left, skip);
    atomic_store(&fail_left, fail);
}

int pthread_shim_calls(void) { return atomic_load(&calls); }
int pthread_shim_failures(void) { return atomic_load(&failures); }
void pthread_shim_linger(int ms) { atomic_store(&linger_ms, ms); }
int pthread_shim_running(void) { return atomic_load(&running); }

typedef struct {
    void* (*start)(void*);
    void* arg;
    int linger_ms;
} STARTED;

static void* run(void* p) {
    STARTED started = *(STARTED*)p;
    free(p);
    void* result = started.start(started.arg);
    struct timespec ts = {started.linger_ms / 1000, (long)(started.linger_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    atomic_fetch_sub(&running, 1);
    return result;
}

typedef int (*CREATE)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*), void* arg) {
    static CREATE real;
    if (real == NULL) {
        void* next = dlsym(RTLD_NEXT, "pthread_create");
        if (next == NULL) {
            fprintf(stderr, "pthread_shim: no pthread_create after ours: %s\n", dlerror());
            abort();
        }
        *(void**)&real = next;
    }
    atomic_fetch_add(&calls, 1);
    if (atomic_load(&fail_left) > 0) {
        if (atomic_load(&skip_left) > 0) {
            atomic_fetch_sub(&skip_left, 1);
        } else {
            atomic_fetch_sub(&fail_left, 1);
            atomic_fetch_add(&failures, 1);
            return EAGAIN;
        }
    }
    STARTED* started = malloc(sizeof *started);
    if (started == NULL) return EAGAIN;
    *started = (STARTED){start, arg, atomic_load(&linger_ms)};
    atomic_fetch_add(&running, 1);
    int rc = real(thread, attr, run, started);
    if (rc != 0) {
        atomic_fetch_sub(&running, 1);
        free(started);
    }
    return rc;
}
