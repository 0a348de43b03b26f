/* The pthread_create of pthread_shim.h. */
#define _GNU_SOURCE
#include "pthread_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_int skip_left, fail_left, calls, failures;

void pthread_shim_fail(int skip, int fail) {
    atomic_store(&skip_left, skip);
    atomic_store(&fail_left, fail);
}

int pthread_shim_calls(void) { return atomic_load(&calls); }
int pthread_shim_failures(void) { return atomic_load(&failures); }

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
    return real(thread, attr, start, arg);
}
