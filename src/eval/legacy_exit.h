/* TEMPORARY (issue 9): the exiting error helpers that src/eval still calls until its
 * conversion to the status model of core/status.h lands (the evaluation issue's branch).
 * The rest of the library returns statuses and never exits; only src/cli turns a
 * status into "d2c: error: ..." and an exit code. Delete this file and legacy_exit.c
 * once nothing includes it. */
#ifndef D2C_EVAL_LEGACY_EXIT_H
#define D2C_EVAL_LEGACY_EXIT_H

/* Print "d2c: error: <message>" and exit with status 2 (bad input) or 1 (failure). */
void die_input(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void die_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* The bridge from a returned status: unless st is D2C_OK, prints d2c_last_error() as
 * one "d2c: error:" line and exits with status st. */
void d2c_die_on_error(int st);

#endif
