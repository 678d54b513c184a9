/* Core helpers shared by every part of d2c: error reporting with the exit codes of
 * INTERFACE.md, checked allocation and file I/O, timing, and small maths helpers.
 *
 * Exit codes: 0 success, 2 bad usage or bad input (D2C_EXIT_INPUT), 1 anything else
 * (D2C_EXIT_FAIL). Every error is one line on stderr starting "d2c: error: ". */
#ifndef D2C_CORE_UTIL_H
#define D2C_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

enum { D2C_EXIT_OK = 0, D2C_EXIT_FAIL = 1, D2C_EXIT_INPUT = 2 };

/* Prints "d2c: error: <message>" and exits with status 2 (bad input or usage). */
void die_input(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints "d2c: error: <message>" and exits with status 1 (internal or resource failure). */
void die_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* A warning through the warning handler of core/status.h ("d2c: warning: <message>" on
 * stderr by default); returns. */
void warn_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "d2c: <kind>: <message>" on stderr, ending an open progress line first. */
void report_line(const char *kind, const char *message);

/* Tells the error reporter that stderr holds an unfinished progress line (1) or not (0). */
void stderr_live_line(int open);

/* Registers a path to remove if the process dies through die_*() (half-written outputs).
 * Pass NULL to clear. One path at a time is enough: outputs are written one by one. */
void cleanup_on_die(const char *path);

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

/* Reads a whole file into memory; dies with status 2 naming the file if it cannot.
 * *len receives its size. The buffer has one extra NUL byte. */
unsigned char *read_whole_file(const char *path, size_t *len);

/* Atomic file output: write to "<path>.tmp.<pid>", fsync, rename over path. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} AtomicFile;
/* Opens the temporary file; dies with status 2 if the directory cannot be written. */
AtomicFile atomic_open(const char *path);
/* Flushes, fsyncs, renames; dies with status 1 on I/O failure (removing the temporary). */
void atomic_commit(AtomicFile *af);
/* Removes the temporary file without touching path. */
void atomic_abort(AtomicFile *af);

/* Dies with status 2 naming path unless a file can be created there (tries and removes
 * a temporary beside it): call before long work whose result goes to path. */
void check_writable(const char *path);

/* Parses a whole string as a number; return 0 on success, -1 if malformed or out of range. */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);

/* Number of worker threads for OpenMP and OpenBLAS; sets both. */
void set_num_threads(int n);
int get_num_threads(void);

#define D2C_PI 3.14159265358979323846
#define D2C_MIN(a, b) ((a) < (b) ? (a) : (b))
#define D2C_MAX(a, b) ((a) > (b) ? (a) : (b))

/* An invariant that protects memory: stays on in release builds. */
#define D2C_CHECK(cond)                                                               \
    do {                                                                               \
        if (!(cond)) d2c_fatal("internal check failed at %s:%d: %s", __FILE__, __LINE__, #cond); \
    } while (0)

#endif
