/* Core helpers: error exits, checked allocation, atomic file output, timing, parsing. */
#define _GNU_SOURCE
#include "core/util.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *g_cleanup_path;

void cleanup_on_die(const char *path) {
    free(g_cleanup_path);
    g_cleanup_path = path ? strdup(path) : NULL;
}

static int g_live_line;

void stderr_live_line(int open) { g_live_line = open; }

void report_line(const char *kind, const char *message) {
    fflush(stdout);
    if (g_live_line) fputc('\n', stderr); /* end the progress bar's line first */
    g_live_line = 0;
    fprintf(stderr, "d2c: %s: %s\n", kind, message);
}

static void vreport(const char *kind, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    report_line(kind, msg);
}

__attribute__((noreturn)) static void die_with(int status, const char *fmt, va_list ap) {
    vreport("error", fmt, ap);
    if (g_cleanup_path) unlink(g_cleanup_path);
    exit(status);
}

void die_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_with(D2C_EXIT_INPUT, fmt, ap);
}

void die_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_with(D2C_EXIT_FAIL, fmt, ap);
}

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) d2c_fatal("out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) d2c_fatal("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) d2c_fatal("out of memory reallocating %zu bytes", bytes);
    return q;
}

float *xmalloc_floats(size_t count) {
    void *p = NULL;
    size_t bytes = (count ? count : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) d2c_fatal("out of memory allocating %zu floats", count);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

unsigned char *read_whole_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die_input("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        die_input("'%s' is not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = xmalloc(n + 1);
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        die_input("cannot read '%s': %s", path, strerror(errno));
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

AtomicFile atomic_open(const char *path) {
    AtomicFile af = {0};
    af.path = xstrdup(path);
    size_t n = strlen(path) + 32;
    af.tmp_path = xmalloc(n);
    snprintf(af.tmp_path, n, "%s.tmp.%d", path, (int)getpid());
    af.f = fopen(af.tmp_path, "wb");
    if (!af.f) die_input("cannot write '%s': %s", path, strerror(errno));
    cleanup_on_die(af.tmp_path);
    return af;
}

void atomic_commit(AtomicFile *af) {
    int bad = fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad || rename(af->tmp_path, af->path) != 0) {
        int e = errno;
        unlink(af->tmp_path);
        cleanup_on_die(NULL);
        die_fail("cannot write '%s': %s", af->path, strerror(e));
    }
    cleanup_on_die(NULL);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    cleanup_on_die(NULL);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int g_threads = 1;

void set_num_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int get_num_threads(void) { return g_threads; }

void check_writable(const char *path) {
    AtomicFile af = atomic_open(path);
    atomic_abort(&af);
}
