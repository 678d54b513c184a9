/* test_backend_ops' result vectors, error measure and random device inputs (backend_test.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_test.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/util.h"

uint64_t g_case_seed = 1000;

void vec_put(Vec *o, double x) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 1024;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        if (!o->v) d2c_fatal("out of memory");
    }
    o->v[o->n++] = x;
}

void vec_put_f(Vec *o, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) vec_put(o, x[i]);
}

void vec_put_d(Vec *o, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) vec_put(o, x[i]);
}

double nerr(const Vec *a, const Vec *b) {
    if (a->n != b->n || a->n == 0) return INFINITY;
    double d = 0, nb = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (!isfinite(a->v[i]) || !isfinite(b->v[i])) return INFINITY;
        d += (a->v[i] - b->v[i]) * (a->v[i] - b->v[i]);
        nb += b->v[i] * b->v[i];
    }
    return nb > 0 ? sqrt(d / nb) : sqrt(d);
}

int report(const char *backend, const char *against, const char *what, double err, double tol) {
    const int ok = err <= tol;
    printf("%-5s %-40s vs %-5s err %9.3e  tol %.0e  %s\n", backend, what, against, err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
    return !ok;
}

float *rand_host(size_t n, float scale) {
    float *h = xmalloc_floats(n ? n : 1);
    Rng r = rng_stream(g_case_seed++, RNG_EVAL, 77);
    for (size_t i = 0; i < n; i++) h[i] = scale * rng_normal(&r);
    return h;
}

float *to_dev(Engine *e, const float *h, size_t n) {
    float *d = engine_xalloc_floats(e, n ? n : 1);
    engine_upload_floats(e, d, h, n);
    return d;
}

void take(Engine *e, Vec *out, float *d, size_t n) {
    float *h = xmalloc_floats(n ? n : 1);
    engine_download_floats(e, h, d, n);
    vec_put_f(out, h, n);
    free(h);
    engine_free(e, d);
}
