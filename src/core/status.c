/* The error model's state: one message per thread, the fatal and warning handlers. */
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define D2C_ERROR_MAX 1024

static _Thread_local char g_message[D2C_ERROR_MAX];

int d2c_verror(int status, const char *fmt, va_list ap) {
    /* through a local buffer: the arguments may point into g_message itself
     * (d2c_error(st, "%s (while ...)", d2c_last_error())) */
    char msg[D2C_ERROR_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(g_message, msg, sizeof msg);
    return status;
}

int d2c_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    d2c_verror(status, fmt, ap);
    va_end(ap);
    return status;
}

int d2c_error_context(int status, const char *fmt, ...) {
    if (status == D2C_OK) return status; /* nothing failed: leave the message alone */
    char prefix[D2C_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t np = strlen(prefix), nm = strlen(g_message);
    if (np >= D2C_ERROR_MAX - 1) np = D2C_ERROR_MAX - 1;
    if (np + nm >= D2C_ERROR_MAX) nm = D2C_ERROR_MAX - 1 - np; /* keep the prefix, cut the tail */
    memmove(g_message + np, g_message, nm);
    memcpy(g_message, prefix, np);
    g_message[np + nm] = 0;
    return status;
}

const char *d2c_last_error(void) { return g_message; }

void d2c_clear_error(void) { g_message[0] = 0; }

static d2c_fatal_handler g_fatal;
static d2c_warning_handler g_warning;

void d2c_set_fatal_handler(d2c_fatal_handler handler) { g_fatal = handler; }
void d2c_set_warning_handler(d2c_warning_handler handler) { g_warning = handler; }

void d2c_fatal(const char *fmt, ...) {
    char msg[D2C_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_fatal) g_fatal(msg); /* must not return; if it does, the default follows */
    report_line("error", msg);
    exit(D2C_ERR_FAIL);
}

void warn_msg(const char *fmt, ...) {
    char msg[D2C_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_warning) g_warning(msg);
    else report_line("warning", msg);
}

void *d2c_try_malloc(size_t bytes) {
    void *p = NULL;
    size_t rounded = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    if (rounded < bytes || posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}
