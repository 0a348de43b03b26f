/*
 * pthread_create that fails on demand, and counts and slows the ends of the threads it starts,
 * for the thread tests: linked into process_tests,
 * whose exported definition (ENABLE_EXPORTS) the library's calls bind to, as an LD_PRELOAD
 * shim's would; unlike a preloaded one it also works under ASan, whose runtime must come first.
 */
#ifndef PMT_PTHREAD_SHIM_H
#define PMT_PTHREAD_SHIM_H

/* The next `skip` calls go through, the `fail` after them return EAGAIN, the rest go through. */
void pthread_shim_fail(int skip, int fail);
/* Calls so far (all of them, failed or not), and how many failed. */
int pthread_shim_calls(void);
int pthread_shim_failures(void);
/* Threads started from now on wait `ms` after their work returns before they end: a slow end. */
void pthread_shim_linger(int ms);
/* Threads started through the shim whose work (and linger) has not returned yet. */
int pthread_shim_running(void);

#endif
