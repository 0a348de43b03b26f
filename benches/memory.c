/*
 * Memory bench (issue 14, goal 1): the resident memory prov_mqtt_transport adds to a C process that
 * registers one device, and where it goes.
 *
 *   memory [--ws] --uri HOST[:PORT] --scope SCOPE --registration-id ID --trusted-ca FILE --sas-token T
 *
 * The registration itself is examples/c/prov_dev_sample.c (included below with its main renamed),
 * so this is the customer's program, not a special one. Around it:
 *   - "before": /proc/self/smaps after start-up, before the first create;
 *   - "peak": a sampler thread reads /proc/self/smaps every millisecond while the sample runs and
 *     keeps the breakdown of the sample with the largest Rss (the kernel's VmHWM is printed too);
 *   - "after destroy": 4 s after the sample's destroy (the library hands its pages back 3 s after
 *     the last handle is destroyed: src/net/release.rs).
 * The sampler allocates nothing (static buffers, raw read(2)), so it adds no malloc arena of its own;
 * its stack is 64 KiB and exists before "before".
 *
 * Each snapshot sorts the mappings into: the library's file pages (text, read-only data, data+bss),
 * the main heap ([heap]), malloc arenas of other threads (anonymous mappings starting at a 64 MiB
 * boundary, glibc's HEAP_MAX_SIZE; their 64 MiB reservations are only virtual), thread stacks (the
 * mapping that holds a thread's stack pointer, from /proc/self/task/TID/syscall, named by its comm),
 * other anonymous memory (malloc's mmap'd blocks of >= 128 KiB, the runtime's own mmaps), and the
 * rest (the executable, libc, ld.so, vdso). Heap in use is mallinfo2's uordblks + hblkhd (bytes
 * malloc has handed out and not taken back), next to the resident pages that hold it.
 *
 * The library's own pages, counted page by page ("libpages" in the JSON): for its text and its
 * read-only mappings, how many pages are present in this process's page tables (/proc/self/pagemap,
 * bit 63) and how many of the file's pages are in the page cache (mincore), before create and after
 * destroy (file pages are never unmapped, so "after" is the peak's count). The kernel's fault-around
 * maps every page already in the page cache within the 64 KiB window of a faulted page, so with the
 * file wholly cached (as after an install) "present" is the pages the registration's code and data
 * touch, rounded out to 64 KiB windows. With MEMORY_EVICT=1 in the environment, after start-up and
 * before create, the library's mappings get madvise(MADV_RANDOM) (a fault reads no pages around it)
 * and the file's cached pages that this process has not mapped are dropped (posix_fadvise
 * DONTNEED; mapped pages stay): fault-around then finds nothing else cached, so "present" is the
 * pages the registration really touches. (Evicting the file before the process starts does not do
 * that: ld.so's first fault reads the file back around it, 8 MiB on this machine's disk; and on
 * Linux 6.18 the text's faults read ahead regardless, so this holds for the read-only data only.)
 * "lib_base" (the load address) lets scripts/hot-symbols.sh map traced addresses to the library's
 * symbols. With MEMORY_TRACE_TEXT=1 the library's text is
 * made non-executable before create and a SIGSEGV handler gives each page back its execute right
 * when it is first run: "text_exec_pages" lists, in first-run order, the pages (offsets from
 * lib_base) the registration's code really runs on, natively, whatever fault-around maps (only for
 * scripts/hot-symbols.sh: the memory figures of such a run are not the bench's).
 *
 * Prints one JSON object on the last line of stdout (benches/memory.sh renders it).
 */
#define _GNU_SOURCE
#define main sample_main
#include "../examples/c/prov_dev_sample.c"
#undef main

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

enum { LIB_TEXT, LIB_RO, LIB_DATA, HEAP, ARENA, STACK, ANON, OTHER, NCAT };
static const char* const CAT[NCAT] = {"lib_text", "lib_ro", "lib_data", "heap", "arenas", "stacks", "anon", "other"};

#define MAXTHREADS 32
typedef struct {
    long total_kb;
    long cat_kb[NCAT];
    int arenas;
    int threads;
    char stack_name[MAXTHREADS][16];
    long stack_kb[MAXTHREADS];
    size_t heap_in_use;
    long anonymous_kb; /* the smaps "Anonymous:" lines: memory no file backs, all parts */
    char other_path[24][64];
    long other_kb[24];
} SNAP;

static char smaps_buf[1 << 20];

static ssize_t read_all(const char* path, char* buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* the stack pointers of the process's threads, with their names */
static int thread_stacks(uintptr_t sp[], char name[][16]) {
    static char dirbuf[8192];
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    int n = 0;
    for (;;) {
        long got = (long)getdents64(fd, dirbuf, sizeof dirbuf);
        if (got <= 0) break;
        for (long off = 0; off < got;) {
            struct dirent64* e = (struct dirent64*)(dirbuf + off);
            off += e->d_reclen;
            if (e->d_name[0] < '0' || e->d_name[0] > '9' || n == MAXTHREADS) continue;
            char path[300], line[256];
            long tid = strtol(e->d_name, NULL, 10);
            snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tid);
            if (read_all(path, line, sizeof line) <= 0) continue;
            line[strcspn(line, "\n")] = '\0';
            line[15] = '\0';
            memcpy(name[n], line, 16);
            /* "nr a1 .. a6 sp pc" while in a syscall, "running" otherwise (then: unknown) */
            snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
            sp[n] = 0;
            if (read_all(path, line, sizeof line) > 0) {
                char* f[9];
                int k = 0;
                for (char* t = strtok(line, " \n"); t && k < 9; t = strtok(NULL, " \n")) f[k++] = t;
                if (k == 9) sp[n] = (uintptr_t)strtoull(f[7], NULL, 16);
            }
            n++;
        }
    }
    close(fd);
    return n;
}

/* the main thread and the sampler both take snapshots, into the one static buffer */
static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;

static void snapshot_locked(SNAP* s);

static void snapshot(SNAP* s) {
    pthread_mutex_lock(&snapshot_lock);
    snapshot_locked(s);
    pthread_mutex_unlock(&snapshot_lock);
}

static void snapshot_locked(SNAP* s) {
    memset(s, 0, sizeof *s);
    uintptr_t sp[MAXTHREADS];
    char names[MAXTHREADS][16];
    int nt = thread_stacks(sp, names);
    s->threads = nt;
    if (read_all("/proc/self/smaps", smaps_buf, sizeof smaps_buf) <= 0) return;
    int cat = OTHER, stack = -1, other = -1;
    for (char* line = smaps_buf; *line;) {
        char* end = strchr(line, '\n');
        if (end) *end = '\0';
        uintptr_t lo, hi;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &name_at) == 3) {
            const char* path = name_at ? line + name_at : "";
            stack = -1;
            if (strstr(path, "libprov_mqtt_transport")) {
                cat = perms[2] == 'x' ? LIB_TEXT : perms[1] == 'w' ? LIB_DATA : LIB_RO;
            } else if (strcmp(path, "[heap]") == 0) {
                cat = HEAP;
            } else if (path[0] == '\0' && perms[0] == 'r') {
                cat = ANON;
                for (int i = 0; i < nt; i++)
                    if (sp[i] >= lo && sp[i] < hi) { cat = STACK; stack = i; }
                if (cat == ANON && (lo & ((64ul << 20) - 1)) == 0) { cat = ARENA; s->arenas++; }
            } else if (strcmp(path, "[stack]") == 0) {
                cat = STACK;
                for (int i = 0; i < nt; i++)
                    if (sp[i] >= lo && sp[i] < hi) stack = i;
            } else {
                cat = OTHER;
            }
            other = -1;
            if (cat == OTHER) {
                const char* base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path[0] ? path : "[anon ---p]";
                for (int i = 0; i < 24 && other < 0; i++) {
                    if (s->other_path[i][0] == '\0') snprintf(s->other_path[i], 64, "%.63s", base);
                    if (strcmp(s->other_path[i], base) == 0) other = i;
                }
            }
        } else if (strncmp(line, "Rss:", 4) == 0) {
            long kb = strtol(line + 4, NULL, 10);
            s->total_kb += kb;
            s->cat_kb[cat] += kb;
            if (other >= 0) s->other_kb[other] += kb;
            if (stack >= 0) {
                memcpy(s->stack_name[stack], names[stack], 16);
                s->stack_kb[stack] += kb;
            }
        } else if (strncmp(line, "Anonymous:", 10) == 0) {
            s->anonymous_kb += strtol(line + 10, NULL, 10);
        }
        if (!end) break;
        line = end + 1;
    }
    struct mallinfo2 mi = mallinfo2();
    s->heap_in_use = mi.uordblks + mi.hblkhd;
}

/* the library's mappings (from /proc/self/maps), their present and page-cached pages */
#define MAXLIBMAPS 16
static struct { uintptr_t lo, hi; char perms[8]; } libmap[MAXLIBMAPS];
static int nlibmaps;
static uintptr_t lib_base;
static char lib_path[512];

static void find_lib_maps(void) {
    static char buf[1 << 16];
    nlibmaps = 0;
    if (read_all("/proc/self/maps", buf, sizeof buf) <= 0) return;
    for (char* line = buf; *line;) {
        char* end = strchr(line, '\n');
        if (end) *end = '\0';
        uintptr_t lo, hi;
        unsigned long off;
        char perms[8];
        if (strstr(line, "libprov_mqtt_transport") && nlibmaps < MAXLIBMAPS &&
            sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, perms, &off) == 4) {
            if (off == 0 && (lib_base == 0 || lo < lib_base)) lib_base = lo;
            const char* p = strchr(line, '/');
            if (p) snprintf(lib_path, sizeof lib_path, "%s", p);
            libmap[nlibmaps].lo = lo;
            libmap[nlibmaps].hi = hi;
            memcpy(libmap[nlibmaps].perms, perms, 8);
            nlibmaps++;
        }
        if (!end) break;
        line = end + 1;
    }
}

typedef struct {
    long text_present, text_cached, text_pages, ro_present, ro_cached, ro_pages;
    char text_windows[512]; /* the 64 KiB-aligned windows over the text: 1 if a page is present */
} LIBPAGES;

static void lib_pages(LIBPAGES* lp) {
    memset(lp, 0, sizeof *lp);
    long ps = sysconf(_SC_PAGESIZE);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    static uint64_t pm[4096];
    static unsigned char mc[4096];
    for (int m = 0; m < nlibmaps; m++) {
        int text = libmap[m].perms[2] == 'x';
        if (!text && libmap[m].perms[1] == 'w') continue; /* data+bss: anonymous once written */
        for (uintptr_t a = libmap[m].lo; a < libmap[m].hi;) {
            size_t n = (libmap[m].hi - a) / (size_t)ps;
            if (n > 4096) n = 4096;
            long present = 0, cached = 0;
            if (fd >= 0 && pread(fd, pm, n * 8, (off_t)(a / (size_t)ps * 8)) == (ssize_t)(n * 8))
                for (size_t i = 0; i < n; i++) {
                    present += (long)(pm[i] >> 63);
                    size_t w = ((a + i * (size_t)ps) >> 16) - (libmap[m].lo >> 16);
                    if (text && w < sizeof lp->text_windows - 1) {
                        for (size_t j = strlen(lp->text_windows); j <= w; j++) lp->text_windows[j] = '0';
                        if (pm[i] >> 63) lp->text_windows[w] = '1';
                    }
                }
            if (mincore((void*)a, n * (size_t)ps, mc) == 0)
                for (size_t i = 0; i < n; i++) cached += mc[i] & 1;
            if (text) { lp->text_present += present; lp->text_cached += cached; lp->text_pages += (long)n; }
            else { lp->ro_present += present; lp->ro_cached += cached; lp->ro_pages += (long)n; }
            a += n * (size_t)ps;
        }
    }
    if (fd >= 0) close(fd);
}

static void print_libpages(const char* key, const LIBPAGES* lp, int comma) {
    printf("\"%s\":{\"text_present\":%ld,\"text_cached\":%ld,\"text_pages\":%ld,\"ro_present\":%ld,"
           "\"ro_cached\":%ld,\"ro_pages\":%ld,\"text_windows\":\"%s\"}%s",
           key, lp->text_present, lp->text_cached, lp->text_pages, lp->ro_present, lp->ro_cached, lp->ro_pages,
           lp->text_windows, comma ? "," : "");
}

/* MEMORY_TRACE_TEXT=1: the text pages run, in first-run order */
static uintptr_t trace_lo, trace_hi;
static uintptr_t traced[4096];
static int ntraced;

static void on_text_fault(int sig, siginfo_t* si, void* ctx) {
    (void)ctx;
    uintptr_t a = (uintptr_t)si->si_addr, page = a & ~(uintptr_t)4095;
    if (a < trace_lo || a >= trace_hi || mprotect((void*)page, 4096, PROT_READ | PROT_EXEC) != 0) {
        signal(sig, SIG_DFL); /* not ours: the fault repeats, with the default action */
        return;
    }
    int i = __atomic_fetch_add(&ntraced, 1, __ATOMIC_RELAXED);
    if (i < 4096) traced[i] = page;
}

static void trace_text(void) {
    for (int m = 0; m < nlibmaps; m++)
        if (libmap[m].perms[2] == 'x') { trace_lo = libmap[m].lo; trace_hi = libmap[m].hi; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_text_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    if (trace_lo == 0 || mprotect((void*)trace_lo, trace_hi - trace_lo, PROT_READ) != 0)
        fprintf(stderr, "memory bench: cannot trace the library's text\n");
}

static SNAP peak;
static volatile int sampling = 1;

static void* sampler(void* arg) {
    (void)arg;
    static SNAP s;
    while (sampling) {
        snapshot(&s);
        if (s.total_kb > peak.total_kb) peak = s;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static long status_kb(const char* field) {
    static char buf[4096];
    if (read_all("/proc/self/status", buf, sizeof buf) <= 0) return -1;
    char* p = strstr(buf, field);
    return p ? strtol(p + strlen(field) + 1, NULL, 10) : -1;
}

static void print_snap(const char* key, const SNAP* s, int comma) {
    printf("\"%s\":{\"rss_kb\":%ld,\"threads\":%d,\"arenas\":%d,\"heap_in_use\":%zu", key, s->total_kb, s->threads,
           s->arenas, s->heap_in_use);
    for (int c = 0; c < NCAT; c++) printf(",\"%s_kb\":%ld", CAT[c], s->cat_kb[c]);
    printf(",\"stack_by_thread\":{");
    int first = 1;
    for (int i = 0; i < MAXTHREADS; i++) {
        if (s->stack_name[i][0] == '\0') continue;
        printf("%s\"%s#%d\":%ld", first ? "" : ",", s->stack_name[i], i, s->stack_kb[i]);
        first = 0;
    }
    printf("},\"anonymous_kb\":%ld,\"other_by_file\":{", s->anonymous_kb);
    first = 1;
    for (int i = 0; i < 24; i++) {
        if (s->other_path[i][0] == '\0') continue;
        printf("%s\"%s\":%ld", first ? "" : ",", s->other_path[i], s->other_kb[i]);
        first = 0;
    }
    printf("}}%s", comma ? "," : "");
}

int main(int argc, char** argv) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    static SNAP before, after;
    /* what any C program has touched before it creates a transport: stdio's buffer */
    printf("memory bench: starting\n");
    if (pthread_create(&t, &attr, sampler, NULL) != 0) { fprintf(stderr, "cannot start the sampler\n"); return 1; }
    struct timespec settle = {0, 20000000};
    nanosleep(&settle, NULL);
    find_lib_maps();
    const char* evict = getenv("MEMORY_EVICT");
    if (evict && strcmp(evict, "1") == 0) {
        for (int m = 0; m < nlibmaps; m++) madvise((void*)libmap[m].lo, libmap[m].hi - libmap[m].lo, MADV_RANDOM);
        int fd = open(lib_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
            fprintf(stderr, "memory bench: cannot evict %s\n", lib_path);
        if (fd >= 0) close(fd);
    }
    static LIBPAGES lp_before, lp_after;
    lib_pages(&lp_before);
    snapshot(&before);
    long hwm_before = status_kb("VmHWM:");
    const char* trace = getenv("MEMORY_TRACE_TEXT");
    if (trace && strcmp(trace, "1") == 0) trace_text();
    int rc = sample_main(argc, argv);
    struct timespec pause = {4, 0};
    nanosleep(&pause, NULL);
    sampling = 0;
    pthread_join(t, NULL);
    snapshot(&after);
    lib_pages(&lp_after);
    long hwm = status_kb("VmHWM:");
    printf("{\"rc\":%d,\"vmhwm_before_kb\":%ld,\"vmhwm_kb\":%ld,\"lib_base\":\"0x%lx\",\"libpages\":{", rc,
           hwm_before, hwm, (unsigned long)lib_base);
    print_libpages("before", &lp_before, 1);
    print_libpages("after", &lp_after, 0);
    printf("},\"text_exec_pages\":\"");
    int n = __atomic_load_n(&ntraced, __ATOMIC_RELAXED);
    for (int i = 0; i < n && i < 4096; i++) printf("%s%lx", i ? "," : "", (unsigned long)(traced[i] - lib_base));
    printf("\",");
    print_snap("before", &before, 1);
    print_snap("peak", &peak, 1);
    print_snap("after", &after, 0);
    printf("}\n");
    return rc;
}
