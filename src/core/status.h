/* The library's error model. Every library function that can fail on its input or its
 * resources returns an int status: D2C_OK (0), D2C_ERR_INPUT (2: bad input, a file, an
 * option or a value the caller gave) or D2C_ERR_FAIL (1: an I/O error, a resource
 * failure, a non-finite loss). The values equal INTERFACE.md's exit codes, so the command
 * line turns a status into its exit status unchanged; nothing else does, and library code
 * never exits on bad input.
 *
 * The function that detects a problem records one message for it with d2c_error(), which
 * returns the status so that detection and return are one statement:
 *
 *     if (n < 1) return d2c_error(D2C_ERR_INPUT, "%s: holds no images", path);
 *
 * The message names the file, option or value at fault and is kept per thread until the
 * next d2c_error() on that thread; d2c_last_error() reads it. Callers that add context do
 * so with d2c_error_context() ("loading the pool: " + the message), and propagate with
 * D2C_TRY, or with D2C_TRY_GOTO where resources must be released first. A function that
 * fails releases what it allocated and leaves no partial output file behind.
 *
 * The message is per thread: work that fails inside an OpenMP parallel region must carry
 * its reason out of the region and record it on the calling thread (the image-folder
 * loader does: the first bad file in load order is reported, whatever the timing).
 * d2c_error's arguments may point into the current message (it formats into a copy).
 *
 * Two failures are not statuses, because no caller can act on them: running out of memory
 * in a small allocation (xmalloc and friends) and a broken internal invariant (D2C_CHECK).
 * They go to the fatal handler (d2c_set_fatal_handler; by default one "d2c: error:" line on
 * stderr and exit status 1). Allocations whose size comes from input are checked against
 * the input first (a header that claims more data than its file holds is D2C_ERR_INPUT),
 * and large ones use d2c_try_malloc and return D2C_ERR_FAIL naming the size. */
#ifndef D2C_CORE_STATUS_H
#define D2C_CORE_STATUS_H

#include <stdarg.h>
#include <stddef.h>

enum { D2C_OK = 0, D2C_ERR_FAIL = 1, D2C_ERR_INPUT = 2 };

/* Records the message for this thread (printf format) and returns status. */
int d2c_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int d2c_verror(int status, const char *fmt, va_list ap);
/* Prefixes this thread's message with the formatted text (which should end in ": ") and
 * returns status unchanged; does nothing when status is D2C_OK, so that it can wrap a
 * call: return d2c_error_context(dataset_load(&d, src), "--data %s: ", src). */
int d2c_error_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last message ("" when there is none). Valid until the next d2c_error*. */
const char *d2c_last_error(void);
void d2c_clear_error(void);

/* Propagates a failing status from expr. */
#define D2C_TRY(expr)                          \
    do {                                       \
        int d2c_try_status_ = (expr);          \
        if (d2c_try_status_ != D2C_OK) return d2c_try_status_; \
    } while (0)
/* Stores expr's status in the int variable st and jumps to label when it failed. */
#define D2C_TRY_GOTO(st, expr, label)          \
    do {                                       \
        if (((st) = (expr)) != D2C_OK) goto label; \
    } while (0)

/* The handler of unrecoverable failures (out of memory, a broken invariant). It must not
 * return; NULL restores the default (message on stderr, exit status 1). A program that
 * embeds d2c under MPI installs one that calls MPI_Abort. */
typedef void (*d2c_fatal_handler)(const char *message);
void d2c_set_fatal_handler(d2c_fatal_handler handler);
void d2c_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Warnings: one line "d2c: warning: <message>" on stderr by default; a program can route
 * them elsewhere (NULL restores the default). */
typedef void (*d2c_warning_handler)(const char *message);
void d2c_set_warning_handler(d2c_warning_handler handler);

/* malloc that returns NULL on failure instead of calling the fatal handler, for buffers
 * whose size depends on the input; 64-byte aligned, free with free(). */
void *d2c_try_malloc(size_t bytes);

#endif
