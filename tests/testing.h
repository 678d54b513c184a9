/* A minimal test harness: CHECK macros that count failures, tensor comparison by
 * max |a - b| / max |b|, and a closing summary line "N passed, N failed" that CTest
 * and CI read. A test program returns test_finish()'s value from main. */
#ifndef D2C_TESTING_H
#define D2C_TESTING_H

#include <stddef.h>

void test_check(int ok, const char *file, int line, const char *what);
#define CHECK(cond) test_check((cond) != 0, __FILE__, __LINE__, #cond)

/* Relative error max|a-b| / max(max|b|, tiny); prints one line "name: err (limit)" and
 * counts a failure when err > limit or any value is not finite. Returns err. */
double check_close(const char *name, const float *a, const float *b, size_t n, double limit);
/* Same, for double arrays. */
double check_close_d(const char *name, const double *a, const double *b, size_t n, double limit);

/* Unless st is D2C_OK (core/status.h): prints "d2c: error: <message>" and exits with
 * status st. For set-up steps a test cannot go on without. */
void test_require_ok(int st);

/* Prints "N passed, N failed" and returns the exit status for main: 0 iff no check
 * failed and at least one ran (a test that checked nothing has not passed). */
int test_finish(void);
/* For a test whose reference is missing: prints "skip: <why>" and returns 77, the
 * status CTest reports as skipped where the test declares SKIP_RETURN_CODE 77. */
int test_skip(const char *why);

#endif
