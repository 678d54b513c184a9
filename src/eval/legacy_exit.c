/* TEMPORARY (issue 9): see legacy_exit.h. The one place in the library that exits on an
 * error, for src/eval until it returns statuses. */
#include "eval/legacy_exit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util.h"

__attribute__((noreturn)) static void die_with(int status, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    report_line("error", msg);
    exit(status);
}

void die_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_with(D2C_ERR_INPUT, fmt, ap);
}

void die_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_with(D2C_ERR_FAIL, fmt, ap);
}

void d2c_die_on_error(int st) {
    if (st == D2C_OK) return;
    const char *msg = d2c_last_error();
    report_line("error", *msg ? msg : "unknown error");
    exit(st);
}
