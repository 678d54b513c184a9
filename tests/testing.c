/* The minimal test harness behind tests/testing.h. */
#include "testing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util.h"

static int g_passed, g_failed;

void test_check(int ok, const char *file, int line, const char *what) {
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        printf("FAIL %s:%d: %s\n", file, line, what);
    }
}

static double finish_close(const char *name, double maxdiff, double maxref, int finite, double limit) {
    double err = maxdiff / (maxref > 1e-30 ? maxref : 1e-30);
    int ok = finite && err <= limit;
    printf("%-4s %-48s rel err %.3e (limit %.1e, max|ref| %.3e)\n", ok ? "ok" : "FAIL", name, err,
           limit, maxref);
    if (ok) g_passed++; else g_failed++;
    return finite ? err : INFINITY;
}

double check_close(const char *name, const float *a, const float *b, size_t n, double limit) {
    double maxdiff = 0, maxref = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) finite = 0;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return finish_close(name, maxdiff, maxref, finite, limit);
}

double check_close_d(const char *name, const double *a, const double *b, size_t n, double limit) {
    double maxdiff = 0, maxref = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) finite = 0;
        double d = fabs(a[i] - b[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return finish_close(name, maxdiff, maxref, finite, limit);
}

void test_require_ok(int st) {
    if (st == D2C_OK) return;
    fflush(stdout);
    report_line("error", d2c_last_error());
    exit(st);
}

int test_finish(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    if (g_passed + g_failed == 0) {
        printf("FAIL no check ran: a test that checked nothing has not passed\n");
        return 1;
    }
    return g_failed ? 1 : 0;
}

int test_skip(const char *why) {
    printf("skip: %s\n", why);
    return 77;
}
