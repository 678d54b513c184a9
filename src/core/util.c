/* Core helpers: checked allocation, atomic file output, timing, parsing, name tables. */
#define _GNU_SOURCE
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int g_live_line;

void stderr_live_line(int open) { g_live_line = open; }

void report_line(const char *kind, const char *message) {
    fflush(stdout);
    if (g_live_line) fputc('\n', stderr); /* end the progress bar's line first */
    g_live_line = 0;
    fprintf(stderr, "d2c: %s: %s\n", kind, message);
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

int read_whole_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return d2c_error(D2C_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return d2c_error(D2C_ERR_INPUT, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (max_bytes && n > max_bytes) {
        fclose(f);
        return d2c_error(D2C_ERR_INPUT, "%s: %zu bytes, more than the %zu this file may have", path, n, max_bytes);
    }
    unsigned char *b = d2c_try_malloc(n + 1);
    if (!b) {
        fclose(f);
        return d2c_error(D2C_ERR_FAIL, "%s: out of memory reading its %zu bytes", path, n);
    }
    if (n && fread(b, 1, n, f) != n) {
        int e = ferror(f) ? errno : 0;
        fclose(f);
        free(b);
        return d2c_error(D2C_ERR_INPUT, "%s: cannot read: %s", path, e ? strerror(e) : "the file shrank while reading");
    }
    fclose(f);
    b[n] = 0;
    *buf = b;
    *len = n;
    return D2C_OK;
}

int atomic_open(AtomicFile *af, const char *path) {
    memset(af, 0, sizeof *af);
    /* rename() over a folder fails only at the commit, after the work; refuse it now */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return d2c_error(D2C_ERR_INPUT, "%s: is a folder, not a file to write", path);
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    af->f = fopen(tmp, "wb");
    if (!af->f) {
        int e = errno;
        free(tmp);
        return d2c_error(D2C_ERR_INPUT, "%s: cannot write: %s", path, strerror(e));
    }
    af->path = xstrdup(path);
    af->tmp_path = tmp;
    return D2C_OK;
}

static void atomic_release(AtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

int atomic_commit(AtomicFile *af) {
    D2C_CHECK(af->f && af->path && af->tmp_path);
    errno = 0;
    int bad = fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0;
    int e = errno;
    if (fclose(af->f) != 0 && !bad) bad = 1, e = errno;
    af->f = NULL;
    if (!bad && rename(af->tmp_path, af->path) != 0) bad = 1, e = errno;
    if (bad) {
        unlink(af->tmp_path);
        int st = d2c_error(D2C_ERR_FAIL, "%s: cannot write: %s", af->path, e ? strerror(e) : "I/O error");
        atomic_release(af);
        return st;
    }
    atomic_release(af);
    return D2C_OK;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
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

int check_writable(const char *path) {
    AtomicFile af;
    D2C_TRY(atomic_open(&af, path));
    atomic_abort(&af);
    return D2C_OK;
}

int name_parse(const char *what, const char *const *names, int count, const char *name, int *out) {
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0) {
            *out = i;
            return D2C_OK;
        }
    char list[512];
    name_list(names, count, list, sizeof list);
    return d2c_error(D2C_ERR_INPUT, "unknown %s '%s' (one of %s)", what, name, list);
}

void name_list(const char *const *names, int count, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < count && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", names[i]);
}
