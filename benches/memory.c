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
 * Prints one JSON object on the last line of stdout (benches/memory.sh renders it).
 */
#define _GNU_SOURCE
#define main sample_main
#include "../examples/c/prov_dev_sample.c"
#undef main

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
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
    snapshot(&before);
    long hwm_before = status_kb("VmHWM:");
    int rc = sample_main(argc, argv);
    struct timespec pause = {4, 0};
    nanosleep(&pause, NULL);
    sampling = 0;
    pthread_join(t, NULL);
    snapshot(&after);
    long hwm = status_kb("VmHWM:");
    printf("{\"rc\":%d,\"vmhwm_before_kb\":%ld,\"vmhwm_kb\":%ld,", rc, hwm_before, hwm);
    print_snap("before", &before, 1);
    print_snap("peak", &peak, 1);
    print_snap("after", &after, 0);
    printf("}\n");
    return rc;
}
