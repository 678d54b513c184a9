/* Core helpers shared by every part of d2c: warnings and the stderr line discipline,
 * checked allocation, file I/O that returns a status (core/status.h), timing, parsing,
 * name tables of the enumerated options, and small maths helpers. Nothing here exits
 * except through the fatal handler (out of memory, a broken invariant). */
#ifndef D2C_CORE_UTIL_H
#define D2C_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* INTERFACE.md's exit codes: the statuses of core/status.h, which src/cli returns. */
enum { D2C_EXIT_OK = D2C_OK, D2C_EXIT_FAIL = D2C_ERR_FAIL, D2C_EXIT_INPUT = D2C_ERR_INPUT };

/* A warning through the warning handler of core/status.h ("d2c: warning: <message>" on
 * stderr by default); returns. */
void warn_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "d2c: <kind>: <message>" on stderr, ending an open progress line first. */
void report_line(const char *kind, const char *message);

/* Tells the error reporter that stderr holds an unfinished progress line (1) or not (0). */
void stderr_live_line(int open);

/* Allocation that never returns NULL: on failure the fatal handler of core/status.h
 * reports the size (by default exit status 1).
 * xmalloc_aligned returns 64-byte aligned memory (free with free()). */
void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t bytes);
float *xmalloc_floats(size_t count); /* 64-byte aligned */
char *xstrdup(const char *s);

/* Wall-clock seconds from a monotonic clock. */
double now_seconds(void);
/* Peak resident set size of this process in MiB (from getrusage). */
double peak_rss_mib(void);

/* Reads a whole regular file into *buf (free() it; one extra NUL byte after the data) and
 * its size into *len. D2C_ERR_INPUT naming the file if it is missing, not a regular file,
 * larger than max_bytes (0: no limit) or unreadable; *buf is NULL then. */
int read_whole_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len);

/* Atomic file output: write to "<path>.tmp.<pid>", fsync, rename over path, so path
 * holds either its old content or the complete new one, never a part. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} AtomicFile;
/* Opens the temporary file: D2C_ERR_INPUT naming path if its folder cannot be written. */
int atomic_open(AtomicFile *af, const char *path);
/* Flushes, fsyncs, renames. On an I/O failure (a full disk, a write error seen by
 * ferror) removes the temporary and returns D2C_ERR_FAIL naming path. Either way af is
 * finished with. */
int atomic_commit(AtomicFile *af);
/* Removes the temporary file without touching path (safe on a zeroed or finished af). */
void atomic_abort(AtomicFile *af);

/* D2C_ERR_INPUT naming path unless a file can be created there (tries and removes a
 * temporary beside it): call before long work whose result goes to path. */
int check_writable(const char *path);

/* Name tables of the enumerated options (condensation method, schedule, sampler, ...):
 * names[i] is the name of enum value i. name_parse stores the index of name in *out, or
 * returns D2C_ERR_INPUT "unknown <what> '<name>' (one of a, b, c)". */
int name_parse(const char *what, const char *const *names, int count, const char *name, int *out);
/* "a, b, c" into buf (for help texts and messages). */
void name_list(const char *const *names, int count, char *buf, size_t cap);

/* Parses a whole string as a number; return 0 on success, -1 if malformed or out of range. */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);


/* The most classes a data set or a model may have (the label rule of io/dataset.h).
 * 1000 is ImageNet-1k's count, the largest of the usual condensation benchmarks; the
 * class embedding ((K + 1) x 4C), the per-class matching of every condensation iteration
 * and the per-class pools grow with K, and a label beyond it in the data sets d2c reads
 * is far more likely corruption (one label 90000 once made a 90,001-class model) than a
 * real class. */
#define D2C_MAX_CLASSES 1000

#define D2C_PI 3.14159265358979323846
#define D2C_MIN(a, b) ((a) < (b) ? (a) : (b))
#define D2C_MAX(a, b) ((a) > (b) ? (a) : (b))

/* An invariant that protects memory: stays on in release builds. */
#define D2C_CHECK(cond)                                                               \
    do {                                                                               \
        if (!(cond)) d2c_fatal("internal check failed at %s:%d: %s", __FILE__, __LINE__, #cond); \
    } while (0)

#endif
