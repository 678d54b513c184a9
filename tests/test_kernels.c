/* Tests of the CPU engine kernels (src/engine/kernels.h).
 *
 * Every forward is compared with a direct double-precision loop written here, and every
 * backward with central finite differences of f(p) = sum(r * forward(p)) accumulated in
 * double, r a fixed random upstream gradient. Each gradient check also confirms that a
 * gradient 10x-tolerance wrong fails it, so the tolerance means something. Then: the
 * += semantics (a second backward doubles), NULL gradients (the others are unchanged,
 * bit for bit), and identical bits with 1 and 2 threads. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/vecmath.h"
#include "testing.h"
#include "engine/backend.h"

static Workspace g_ws;
static uint64_t g_stream; /* each random tensor gets its own RNG stream */

static float *randn(size_t n, float scale) {
    Rng r = rng_stream(2024, RNG_INIT, g_stream++);
    float *x = xmalloc_floats(n);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
    return x;
}

static float *zeros(size_t n) {
    float *x = xmalloc_floats(n);
    memset(x, 0, sizeof(float) * n);
    return x;
}

static float *copy_of(const float *x, size_t n) {
    float *y = xmalloc_floats(n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* max|a - b| / max|b| without counting a test (check_close counts). */
static double rel_err(const double *a, const double *b, size_t n) {
    double d = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return d / m;
}

/* compares a float tensor with a double reference */
static void check_vs_ref(const char *name, const float *a, const double *ref, size_t n,
                         double limit) {
    double *ad = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) ad[i] = a[i];
    check_close_d(name, ad, ref, n, limit);
    free(ad);
}

/* printf into a static buffer, for test names */
static const char *fmt(const char *format, ...) {
    static char buf[160];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof buf, format, ap);
    va_end(ap);
    return buf;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, sizeof(float) * n) == 0;
}

/* ------------------------------------------------------------------ finite differences */

/* f(params) = sum r * out, out recomputed by forward(ctx). */
typedef struct {
    void (*forward)(void *ctx);
    void *ctx;
    const float *out;
    size_t n_out;
    const float *r;
} Objective;

static double objective(const Objective *o) {
    o->forward(o->ctx);
    return dot_d(o->r, o->out, o->n_out);
}

/* Compares grad (n values, d f / d param) with central differences of step h at every
 * coordinate, or at max_coords random ones. Passes if the relative error is <= tol; also
 * checks that grad * (1 + 10 tol) would not pass. */
static void check_gradient(const char *name, const Objective *o, float *param, const float *grad,
                           size_t n, float h, size_t max_coords, double tol) {
    size_t m = n < max_coords ? n : max_coords;
    double *fd = malloc(sizeof(double) * m), *an = malloc(sizeof(double) * m);
    Rng r = rng_stream(7, RNG_EVAL, g_stream++);
    for (size_t s = 0; s < m; s++) {
        size_t i = m == n ? s : rng_below(&r, (uint32_t)n);
        float saved = param[i];
        param[i] = saved + h;
        double fp = objective(o);
        param[i] = saved - h;
        double fm = objective(o);
        param[i] = saved;
        fd[s] = (fp - fm) / (2.0 * (double)h);
        an[s] = grad[i];
    }
    objective(o); /* leave the outputs as at the unperturbed point */
    char label[200]; /* name may be fmt's buffer: format into our own */
    snprintf(label, sizeof label, "grad %s (%zu of %zu)", name, m, n);
    check_close_d(label, an, fd, m, tol);
    for (size_t s = 0; s < m; s++) an[s] *= 1.0 + 10.0 * tol;
    CHECK(rel_err(an, fd, m) > tol); /* a 10-tolerance-wrong gradient fails */
    free(fd);
    free(an);
}

/* ------------------------------------------------------------------ convolution */

typedef struct {
    ConvShape s;
    float *x, *w, *b, *y; /* b may be NULL */
} ConvCase;

static void conv_case_forward(void *ctx) {
    ConvCase *c = ctx;
    conv2d_forward(c->y, c->x, c->w, c->b, c->s, &g_ws);
}

/* direct convolution in double: y, and the adjoint dx, dw, db of upstream r */
static void conv_reference(const ConvCase *c, const float *r, double *y, double *dx, double *dw,
                           double *db) {
    ConvShape s = c->s;
    int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride), p = s.k / 2;
    memset(dx, 0, sizeof(double) * s.B * s.Cin * s.H * s.W);
    memset(dw, 0, sizeof(double) * s.Cout * s.Cin * s.k * s.k);
    memset(db, 0, sizeof(double) * s.Cout);
    for (int b = 0; b < s.B; b++)
        for (int co = 0; co < s.Cout; co++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    size_t yi = (((size_t)b * s.Cout + co) * Ho + oy) * Wo + ox;
                    double acc = c->b ? c->b[co] : 0.0;
                    db[co] += r[yi];
                    for (int ci = 0; ci < s.Cin; ci++)
                        for (int ky = 0; ky < s.k; ky++)
                            for (int kx = 0; kx < s.k; kx++) {
                                int iy = oy * s.stride + ky - p, ix = ox * s.stride + kx - p;
                                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                                size_t xi = (((size_t)b * s.Cin + ci) * s.H + iy) * s.W + ix;
                                size_t wi = (((size_t)co * s.Cin + ci) * s.k + ky) * s.k + kx;
                                acc += (double)c->w[wi] * c->x[xi];
                                dx[xi] += (double)c->w[wi] * r[yi];
                                dw[wi] += (double)c->x[xi] * r[yi];
                            }
                    y[yi] = acc;
                }
}

static void test_conv(ConvShape s, int with_bias, size_t fd_coords) {
    int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride);
    size_t nx = (size_t)s.B * s.Cin * s.H * s.W, ny = (size_t)s.B * s.Cout * Ho * Wo;
    size_t nw = (size_t)s.Cout * s.Cin * s.k * s.k;
    ConvCase c = {s, randn(nx, 1.0f), randn(nw, 1.0f / sqrtf((float)s.Cin * s.k * s.k)),
                  with_bias ? randn(s.Cout, 1.0f) : NULL, zeros(ny)};
    float *r = randn(ny, 1.0f);
    char name[128];
    snprintf(name, sizeof name, "conv B%d %dx%dx%d->%d k%d s%d%s", s.B, s.Cin, s.H, s.W, s.Cout,
             s.k, s.stride, with_bias ? " bias" : "");

    double *y_ref = malloc(sizeof(double) * ny), *dx_ref = malloc(sizeof(double) * nx);
    double *dw_ref = malloc(sizeof(double) * nw), *db_ref = malloc(sizeof(double) * s.Cout);
    conv_reference(&c, r, y_ref, dx_ref, dw_ref, db_ref);
    conv_case_forward(&c);
    check_vs_ref(fmt("%s: y vs direct", name), c.y, y_ref, ny, 1e-5);

    float *dx = zeros(nx), *dw = zeros(nw), *db = zeros(s.Cout);
    conv2d_backward(dx, dw, with_bias ? db : NULL, r, c.x, c.w, s, &g_ws);
    check_vs_ref(fmt("%s: dx vs direct", name), dx, dx_ref, nx, 1e-5);
    check_vs_ref(fmt("%s: dw vs direct", name), dw, dw_ref, nw, 1e-5);
    if (with_bias) {
        check_vs_ref(fmt("%s: db vs direct", name), db, db_ref, s.Cout, 1e-5);
    }

    Objective o = {conv_case_forward, &c, c.y, ny, r};
    check_gradient(fmt("%s x", name), &o, c.x, dx, nx, 1e-2f, fd_coords, 2e-4);
    check_gradient(fmt("%s w", name), &o, c.w, dw, nw, 1e-2f, fd_coords, 2e-4);
    if (with_bias) {
        check_gradient(fmt("%s bias", name), &o, c.b, db, s.Cout, 1e-2f, fd_coords, 2e-4);
    }

    /* NULL gradients: each alone gives the same bits as all together */
    float *dx1 = zeros(nx), *dw1 = zeros(nw), *db1 = zeros(s.Cout);
    conv2d_backward(dx1, NULL, NULL, r, c.x, c.w, s, &g_ws);
    conv2d_backward(NULL, dw1, NULL, r, c.x, c.w, s, &g_ws);
    conv2d_backward(NULL, NULL, with_bias ? db1 : NULL, r, c.x, c.w, s, &g_ws);
    CHECK(same_bits(dx1, dx, nx) && same_bits(dw1, dw, nw) && same_bits(db1, db, s.Cout));

    /* += semantics: a second backward doubles every gradient */
    conv2d_backward(dx1, dw1, db1, r, c.x, c.w, s, &g_ws);
    for (size_t i = 0; i < nx; i++) dx[i] *= 2.0f;
    for (size_t i = 0; i < nw; i++) dw[i] *= 2.0f;
    for (int i = 0; i < s.Cout; i++) db[i] *= 2.0f;
    check_close(fmt("%s: backward twice = 2x, dx", name), dx1, dx, nx, 1e-6);
    check_close(fmt("%s: backward twice = 2x, dw", name), dw1, dw, nw, 1e-6);
    if (with_bias) check_close(fmt("%s: backward twice = 2x, db", name), db1, db, s.Cout, 1e-6);

    free(c.x), free(c.w), free(c.b), free(c.y), free(r), free(dx), free(dw), free(db);
    free(dx1), free(dw1), free(db1), free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
}

/* ------------------------------------------------------------------ linear */

typedef struct {
    int B, in, out;
    float *x, *w, *b, *y;
} LinearCase;

static void linear_case_forward(void *ctx) {
    LinearCase *c = ctx;
    linear_forward(c->y, c->x, c->w, c->b, c->B, c->in, c->out);
}

static void test_linear(int B, int in, int out) {
    LinearCase c = {B, in, out, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)B * in, nw = (size_t)out * in, ny = (size_t)B * out;
    c.x = randn(nx, 1.0f), c.w = randn(nw, 1.0f / sqrtf((float)in));
    c.b = randn(out, 1.0f), c.y = zeros(ny);
    float *r = randn(ny, 1.0f);
    char name[64];
    snprintf(name, sizeof name, "linear B%d %d->%d", B, in, out);
    linear_case_forward(&c);
    double *ref = malloc(sizeof(double) * ny);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < out; o++) {
            double acc = c.b[o];
            for (int i = 0; i < in; i++) acc += (double)c.x[b * in + i] * c.w[o * in + i];
            ref[b * out + o] = acc;
        }
    check_vs_ref(fmt("%s: y vs direct", name), c.y, ref, ny, 1e-6);
    float *dx = zeros(nx), *dw = zeros(nw), *db = zeros(out);
    linear_backward(dx, dw, db, r, c.x, c.w, B, in, out);
    Objective o = {linear_case_forward, &c, c.y, ny, r};
    check_gradient(fmt("%s x", name), &o, c.x, dx, nx, 1e-2f, 100, 3e-4);
    check_gradient(fmt("%s w", name), &o, c.w, dw, nw, 1e-2f, 100, 3e-4);
    check_gradient(fmt("%s bias", name), &o, c.b, db, out, 1e-2f, 100, 3e-4);
    float *dw2 = copy_of(dw, nw);
    linear_backward(NULL, dw2, NULL, r, c.x, c.w, B, in, out);
    for (size_t i = 0; i < nw; i++) dw[i] *= 2.0f;
    check_close(fmt("%s: backward twice = 2x", name), dw2, dw, nw, 1e-6);
    free(c.x), free(c.w), free(c.b), free(c.y), free(r), free(ref), free(dx), free(dw), free(db);
    free(dw2);
}

/* ------------------------------------------------------------------ GroupNorm */

typedef struct {
    int B, C, N, G, silu;
    float *x, *gamma, *beta, *y, *mean, *rstd;
} NormCase;

static void norm_case_forward(void *ctx) {
    NormCase *c = ctx;
    groupnorm_forward(c->y, c->mean, c->rstd, c->x, c->gamma, c->beta, c->B, c->C, c->N, c->G,
                      c->silu);
}

static void test_groupnorm(int B, int C, int N, int G, int silu, float h) {
    size_t n = (size_t)B * C * N;
    NormCase c = {B, C, N, G, silu, randn(n, 2.0f), randn(C, 0.5f), randn(C, 0.5f), zeros(n),
                  zeros(B * G), zeros(B * G)};
    for (size_t i = 0; i < n; i++) c.x[i] += 3.0f; /* an offset the mean must remove */
    for (int i = 0; i < C; i++) c.gamma[i] += 1.0f;
    float *r = randn(n, 1.0f);
    char name[64];
    snprintf(name, sizeof name, "groupnorm%s B%d C%d N%d G%d", silu ? "+silu" : "", B, C, N, G);

    norm_case_forward(&c);
    double *ref = malloc(sizeof(double) * n);
    int Cg = C / G;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *xg = c.x + ((size_t)b * C + g * Cg) * N;
            double mu = 0, var = 0;
            for (int i = 0; i < Cg * N; i++) mu += xg[i];
            mu /= Cg * N;
            for (int i = 0; i < Cg * N; i++) var += (xg[i] - mu) * (xg[i] - mu);
            var /= Cg * N;
            for (int i = 0; i < Cg * N; i++) {
                int ch = g * Cg + i / N;
                double z = (xg[i] - mu) / sqrt(var + 1e-5) * c.gamma[ch] + c.beta[ch];
                ref[((size_t)b * C + g * Cg) * N + i] = silu ? z / (1.0 + exp(-z)) : z;
            }
        }
    check_vs_ref(fmt("%s: y vs direct", name), c.y, ref, n, 2e-6);

    float *dx = zeros(n), *dgamma = zeros(C), *dbeta = zeros(C);
    groupnorm_backward(dx, dgamma, dbeta, r, c.x, c.mean, c.rstd, c.gamma, c.beta, B, C, N, G,
                       silu);
    Objective o = {norm_case_forward, &c, c.y, n, r};
    check_gradient(fmt("%s x", name), &o, c.x, dx, n, h, 150, 2e-3);
    check_gradient(fmt("%s gamma", name), &o, c.gamma, dgamma, C, h, 150, 2e-3);
    check_gradient(fmt("%s beta", name), &o, c.beta, dbeta, C, h, 150, 2e-3);

    float *dx2 = copy_of(dx, n), *dg2 = zeros(C);
    groupnorm_backward(dx2, dg2, NULL, r, c.x, c.mean, c.rstd, c.gamma, c.beta, B, C, N, G, silu);
    CHECK(same_bits(dg2, dgamma, C));
    for (size_t i = 0; i < n; i++) dx[i] *= 2.0f;
    check_close(fmt("%s: backward twice = 2x", name), dx2, dx, n, 1e-6);
    free(c.x), free(c.gamma), free(c.beta), free(c.y), free(c.mean), free(c.rstd), free(r);
    free(ref), free(dx), free(dgamma), free(dbeta), free(dx2), free(dg2);
}

/* ------------------------------------------------------------------ element-wise ops */

typedef struct {
    int B, C, H, W;
    size_t n;
    float *x, *x2, *y;
    const int64_t *idx;
    int op;
} EltCase;

enum { OP_SILU, OP_BIAS, OP_UPSAMPLE, OP_CONCAT, OP_EMBED };

static void elt_case_forward(void *ctx) {
    EltCase *c = ctx;
    size_t N = (size_t)c->H * c->W;
    switch (c->op) {
    case OP_SILU: silu_forward(c->y, c->x, c->n); break;
    case OP_BIAS: /* y = x2 + broadcast x */
        memcpy(c->y, c->x2, sizeof(float) * c->B * c->C * N);
        add_channel_bias_forward(c->y, c->x, c->B, c->C, (int)N);
        break;
    case OP_UPSAMPLE: upsample2x_forward(c->y, c->x, c->B, c->C, c->H, c->W); break;
    case OP_CONCAT: concat_channels_forward(c->y, c->x, c->x2, c->B, c->C, c->C + 1, (int)N); break;
    case OP_EMBED: embedding_forward(c->y, c->x, c->idx, c->B, c->C); break;
    }
}

static void test_silu(void) {
    size_t n = 61;
    EltCase c = {.n = n, .x = randn(n, 3.0f), .y = zeros(n), .op = OP_SILU};
    c.x[0] = -100.0f, c.x[1] = 100.0f, c.x[2] = 0.0f, c.x[3] = -20.0f; /* saturation, 0 */
    float *r = randn(n, 1.0f), *dx = zeros(n);
    double y_ref[61], dx_ref[61];
    for (size_t i = 0; i < n; i++) {
        double x = c.x[i], s = 1.0 / (1.0 + exp(-x));
        y_ref[i] = x * s;
        dx_ref[i] = r[i] * s * (1.0 + x * (1.0 - s));
    }
    elt_case_forward(&c);
    check_vs_ref("silu: y vs direct", c.y, y_ref, n, 1e-6);
    silu_backward(dx, r, c.x, n);
    check_vs_ref("silu: dx vs direct", dx, dx_ref, n, 1e-6);
    silu_backward(dx, r, c.x, n);
    for (size_t i = 0; i < n; i++) dx_ref[i] *= 2.0;
    check_vs_ref("silu: backward twice = 2x", dx, dx_ref, n, 1e-6);

    c.x[0] = -4.0f, c.x[1] = 4.0f; /* finite differences away from |x| = 100 */
    memset(dx, 0, sizeof(float) * n);
    silu_backward(dx, r, c.x, n);
    Objective o = {elt_case_forward, &c, c.y, n, r};
    check_gradient("silu x", &o, c.x, dx, n, 1e-2f, 100, 1e-3);
    free(c.x), free(c.y), free(r), free(dx);
}

static void test_fast_expf(void) {
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.01173f) {
        double e = exp((double)x);
        worst = fmax(worst, fabs(fast_expf(x) - e) / e);
    }
    printf("fast_expf max rel err %.3e over [-87, 88]\n", worst);
    CHECK(worst < 3e-7);
    CHECK(fast_expf(-1000.0f) < 2e-38f && fast_expf(1000.0f) > 1e38f);
    CHECK(isfinite(fast_expf(1000.0f)));
}

static void test_data_movement(void) {
    int B = 2, C = 3, H = 3, W = 4, N = H * W;
    /* add_channel_bias: y (B, C, N) = x2 + e (B, C) broadcast */
    EltCase c = {B, C, H, W, 0, randn(B * C, 1.0f), randn(B * C * N, 1.0f), zeros(B * C * N), NULL,
                 OP_BIAS};
    float *r = randn(4 * B * C * N + 64, 1.0f), *g = zeros(4 * B * C * N + 64);
    double ref[4 * 2 * 3 * 12];
    elt_case_forward(&c);
    for (int i = 0; i < B * C * N; i++) ref[i] = (double)c.x2[i] + c.x[i / N];
    check_vs_ref("add_channel_bias: y vs direct", c.y, ref, B * C * N, 1e-7);
    add_channel_bias_backward(g, r, B, C, N);
    Objective o = {elt_case_forward, &c, c.y, B * C * N, r};
    check_gradient("add_channel_bias e", &o, c.x, g, B * C, 1e-2f, 100, 1e-4);
    free(c.x), free(c.x2), free(c.y);

    /* upsample2x */
    c = (EltCase){B, C, H, W, 0, randn(B * C * N, 1.0f), NULL, zeros(4 * B * C * N), NULL,
                  OP_UPSAMPLE};
    elt_case_forward(&c);
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                ref[(p * 2 * H + i) * 2 * W + j] = c.x[(p * H + i / 2) * W + j / 2];
    check_vs_ref("upsample2x: y vs direct", c.y, ref, 4 * B * C * N, 0.0);
    memset(g, 0, sizeof(float) * B * C * N);
    upsample2x_backward(g, r, B, C, H, W);
    o = (Objective){elt_case_forward, &c, c.y, 4 * B * C * N, r};
    check_gradient("upsample2x x", &o, c.x, g, B * C * N, 1e-2f, 100, 1e-4);
    free(c.x), free(c.y);

    /* concat: a (B, C, N), b (B, C+1, N) */
    int Cb = C + 1, Cy = C + Cb;
    c = (EltCase){B, C, H, W, 0, randn(B * C * N, 1.0f), randn(B * Cb * N, 1.0f), zeros(B * Cy * N),
                  NULL, OP_CONCAT};
    elt_case_forward(&c);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < Cy; ch++)
            for (int i = 0; i < N; i++)
                ref[(b * Cy + ch) * N + i] = ch < C ? c.x[(b * C + ch) * N + i]
                                                    : c.x2[(b * Cb + ch - C) * N + i];
    check_vs_ref("concat: y vs direct", c.y, ref, B * Cy * N, 0.0);
    float *gb = zeros(B * Cb * N);
    memset(g, 0, sizeof(float) * B * C * N);
    concat_channels_backward(g, gb, r, B, C, Cb, N);
    o = (Objective){elt_case_forward, &c, c.y, B * Cy * N, r};
    check_gradient("concat a", &o, c.x, g, B * C * N, 1e-2f, 100, 1e-4);
    check_gradient("concat b", &o, c.x2, gb, B * Cb * N, 1e-2f, 100, 1e-4);
    float *gb2 = copy_of(gb, B * Cb * N);
    concat_channels_backward(NULL, gb2, r, B, C, Cb, N); /* da NULL, db += again */
    for (int i = 0; i < B * Cb * N; i++) gb[i] *= 2.0f;
    check_close("concat: backward twice = 2x", gb2, gb, B * Cb * N, 1e-6);
    free(c.x), free(c.x2), free(c.y), free(gb), free(gb2);

    /* embedding with repeated rows: table (5, E), idx (6) */
    int64_t idx[6] = {4, 0, 4, 2, 4, 1};
    int E = 7;
    c = (EltCase){6, E, 1, 1, 0, randn(5 * E, 1.0f), NULL, zeros(6 * E), idx, OP_EMBED};
    elt_case_forward(&c);
    for (int b = 0; b < 6; b++)
        for (int e = 0; e < E; e++) ref[b * E + e] = c.x[idx[b] * E + e];
    check_vs_ref("embedding: y vs table rows", c.y, ref, 6 * E, 0.0);
    memset(g, 0, sizeof(float) * 5 * E);
    embedding_backward(g, r, idx, 6, E);
    o = (Objective){elt_case_forward, &c, c.y, 6 * E, r};
    check_gradient("embedding table", &o, c.x, g, 5 * E, 1e-2f, 100, 1e-4);
    free(c.x), free(c.y), free(r), free(g);
}

/* ------------------------------------------------------------------ attention */

typedef struct {
    int B, C, N;
    float *qkv, *out, *attn;
} AttnCase;

static void attn_case_forward(void *ctx) {
    AttnCase *c = ctx;
    attention_forward(c->out, c->attn, c->qkv, c->B, c->C, c->N, &g_ws);
}

static void test_attention(int B, int C, int N, size_t fd_coords) {
    size_t nqkv = (size_t)B * 3 * C * N, nout = (size_t)B * C * N;
    AttnCase c = {B, C, N, randn(nqkv, 1.0f), zeros(nout), zeros((size_t)B * N * N)};
    float *r = randn(nout, 1.0f), *dqkv = zeros(nqkv);
    char name[64];
    snprintf(name, sizeof name, "attention B%d C%d N%d", B, C, N);
    attn_case_forward(&c);
    double *ref = malloc(sizeof(double) * nout), *a = malloc(sizeof(double) * N);
    for (int b = 0; b < B; b++) {
        const float *q = c.qkv + (size_t)b * 3 * C * N, *k = q + C * N, *v = k + C * N;
        for (int i = 0; i < N; i++) {
            double mx = -1e300, sum = 0;
            for (int j = 0; j < N; j++) {
                a[j] = 0;
                for (int ch = 0; ch < C; ch++) a[j] += (double)q[ch * N + i] * k[ch * N + j];
                a[j] /= sqrt((double)C);
                mx = fmax(mx, a[j]);
            }
            for (int j = 0; j < N; j++) sum += (a[j] = exp(a[j] - mx));
            for (int ch = 0; ch < C; ch++) {
                double acc = 0;
                for (int j = 0; j < N; j++) acc += v[ch * N + j] * a[j] / sum;
                ref[((size_t)b * C + ch) * N + i] = acc;
            }
        }
    }
    check_vs_ref(fmt("%s: out vs direct", name), c.out, ref, nout, 2e-6);
    attention_backward(dqkv, r, c.qkv, c.attn, B, C, N, &g_ws);
    Objective o = {attn_case_forward, &c, c.out, nout, r};
    check_gradient(fmt("%s qkv", name), &o, c.qkv, dqkv, nqkv, 1e-2f, fd_coords, 2e-3);
    float *d2 = copy_of(dqkv, nqkv);
    attention_backward(d2, r, c.qkv, c.attn, B, C, N, &g_ws);
    attention_backward(NULL, r, c.qkv, c.attn, B, C, N, &g_ws);
    for (size_t i = 0; i < nqkv; i++) dqkv[i] *= 2.0f;
    check_close(fmt("%s: backward twice = 2x", name), d2, dqkv, nqkv, 1e-6);
    free(c.qkv), free(c.out), free(c.attn), free(r), free(dqkv), free(d2), free(ref), free(a);
}

/* ------------------------------------------------------------------ small kernels */

typedef struct {
    float *pred, *target, loss;
    size_t n;
} MseCase;

static void mse_case_forward(void *ctx) {
    MseCase *c = ctx;
    c->loss = mse_forward(c->pred, c->target, c->n);
}

static void test_mse_and_vectors(void) {
    size_t n = 53;
    MseCase c = {randn(n, 1.0f), randn(n, 1.0f), 0, n};
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)c.pred[i] - c.target[i];
        ref += d * d;
    }
    mse_case_forward(&c);
    CHECK(fabs(c.loss - ref / n) <= 1e-6 * ref / n);
    float *g = zeros(n), one = 1.0f;
    mse_backward(g, c.pred, c.target, n, 3.0f);
    for (size_t i = 0; i < n; i++) g[i] /= 3.0f;
    Objective o = {mse_case_forward, &c, &c.loss, 1, &one};
    check_gradient("mse pred", &o, c.pred, g, n, 1e-2f, 100, 1e-3);

    float *x = randn(n, 1.0f), *y = copy_of(c.pred, n);
    vec_add(y, x, n);
    vec_axpy(y, -2.0f, x, n);
    double worst = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(y[i] - (c.pred[i] + x[i] - 2.0f * x[i])));
        ss += (double)x[i] * x[i];
    }
    CHECK(worst < 1e-6);
    CHECK(fabs(vec_sum_sq(x, n) - ss) < 1e-12 * ss);
    vec_zero(y, n);
    CHECK(vec_sum_sq(y, n) == 0.0);
    free(c.pred), free(c.target), free(g), free(x), free(y);
}

static void test_timestep_embedding(void) {
    int64_t t[4] = {0, 1, 37, 999};
    int dim = 32, half = 16;
    float y[4 * 32];
    double ref[4 * 32];
    timestep_embedding(y, t, 4, dim);
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < half; j++) {
            double f = exp(-log(10000.0) * j / half);
            ref[b * dim + j] = sin((double)t[b] * f);
            ref[b * dim + half + j] = cos((double)t[b] * f);
        }
    /* float32 arguments up to 999 carry ~3e-5 of rounding, as in PyTorch */
    check_vs_ref("timestep_embedding vs double", y, ref, 4 * dim, 1e-4);
    /* values printed by the spec's timestep_embedding (PyTorch float32) */
    static const struct { int row, col; float value; } torch_values[] = {
        {1, 0, 0.841470957f},    {1, 5, 0.0562044904f},  {1, 21, 0.998419285f},
        {2, 3, 0.292125374f},    {2, 19, 0.95638001f},   {3, 0, -0.0264607519f},
        {3, 1, 0.536338866f},    {3, 15, 0.176717162f},  {3, 16, 0.999649823f},
        {3, 17, -0.844002724f},  {3, 31, 0.984261692f},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof torch_values / sizeof torch_values[0]; i++)
        worst = fmax(worst, fabs(y[torch_values[i].row * dim + torch_values[i].col] -
                                 torch_values[i].value));
    printf("timestep_embedding max |d2c - torch| %.3e\n", worst);
    CHECK(worst < 2e-6);
    CHECK(y[0] == 0.0f && y[half] == 1.0f);
}

/* ------------------------------------------------------------------ threads */

/* Runs conv, GroupNorm+SiLU, element-wise ops, attention and linear forward and backward
 * with the current thread count on fixed inputs; returns all they produce in one buffer. */
static const ConvShape thread_convs[2] = {{6, 16, 14, 14, 16, 3, 1},  /* 1 image per GEMM */
                                          {40, 8, 7, 7, 8, 3, 1}};   /* 4, in 8 dw slots */
enum { TB = 8, TC = 32, TN = 196, TG = 8, TCA = 16, TNA = 49, TL = 64, TIN = 128, TOUT = 256 };

static float *run_all(size_t *n) {
    size_t total = 0;
    for (int k = 0; k < 2; k++) {
        ConvShape s = thread_convs[k];
        total += (size_t)s.B * (s.Cin + s.Cout) * s.H * s.W + (size_t)s.Cout * (s.Cin * 9 + 1);
    }
    total += 2 * (size_t)TB * TC * TN + 2 * TB * TG + 2 * TC;         /* groupnorm */
    total += 11 * (size_t)TB * TC * TN + TB * TC;                      /* element-wise */
    total += (size_t)TB * (4 * TCA * TNA + TNA * TNA);               /* attention */
    total += (size_t)TL * (TIN + TOUT) + TIN * TOUT + TOUT;          /* linear */
    float *out = zeros(total), *at = out;
    for (int k = 0; k < 2; k++) {
        ConvShape s = thread_convs[k];
        size_t nx = (size_t)s.B * s.Cin * s.H * s.W, ny = (size_t)s.B * s.Cout * s.H * s.W;
        size_t nw = (size_t)s.Cout * s.Cin * 9;
        g_stream = 1000 + k;
        float *x = randn(nx, 1.0f), *w = randn(nw, 0.1f), *b = randn(s.Cout, 1.0f);
        float *r = randn(ny, 1.0f);
        float *y = at, *dx = y + ny, *dw = dx + nx, *db = dw + nw;
        at = db + s.Cout;
        conv2d_forward(y, x, w, b, s, &g_ws);
        conv2d_backward(dx, dw, db, r, x, w, s, &g_ws);
        free(x), free(w), free(b), free(r);
    }
    size_t nn = (size_t)TB * TC * TN;
    g_stream = 2000;
    float *x = randn(nn, 1.0f), *gamma = randn(TC, 1.0f), *beta = randn(TC, 1.0f);
    float *r = randn(nn, 1.0f);
    float *y = at, *mean = y + nn, *rstd = mean + TB * TG, *dx = rstd + TB * TG, *dg = dx + nn;
    float *dbeta = dg + TC;
    at = dbeta + TC;
    groupnorm_forward(y, mean, rstd, x, gamma, beta, TB, TC, TN, TG, 1);
    groupnorm_backward(dx, dg, dbeta, r, x, mean, rstd, gamma, beta, TB, TC, TN, TG, 1);
    /* element-wise kernels, large enough to run in parallel: (TB, TC, 14, 14) */
    float *ys = at, *dxs = ys + nn, *up = dxs + nn, *dup = up + 4 * nn, *cat = dup + nn;
    float *dcat = cat + 2 * nn, *de = dcat + 2 * nn;
    at = de + TB * TC;
    silu_forward(ys, x, nn);
    silu_backward(dxs, r, x, nn);
    upsample2x_forward(up, x, TB, TC, 14, 14);
    upsample2x_backward(dup, up, TB, TC, 14, 14);
    concat_channels_forward(cat, x, r, TB, TC, TC, TN);
    concat_channels_backward(dcat, dcat + nn, cat, TB, TC, TC, TN);
    add_channel_bias_backward(de, r, TB, TC, TN);
    free(x), free(gamma), free(beta), free(r);
    size_t nqkv = (size_t)TB * 3 * TCA * TNA;
    float *qkv = randn(nqkv, 1.0f), *ra = randn((size_t)TB * TCA * TNA, 1.0f);
    float *ao = at, *attn = ao + TB * TCA * TNA, *dqkv = attn + TB * TNA * TNA;
    attention_forward(ao, attn, qkv, TB, TCA, TNA, &g_ws);
    attention_backward(dqkv, ra, qkv, attn, TB, TCA, TNA, &g_ws);
    free(qkv), free(ra);
    float *xl = randn((size_t)TL * TIN, 1.0f), *wl = randn((size_t)TOUT * TIN, 0.1f);
    float *rl = randn((size_t)TL * TOUT, 1.0f);
    float *yl = dqkv + nqkv, *dxl = yl + TL * TOUT, *dwl = dxl + TL * TIN, *dbl = dwl + TIN * TOUT;
    linear_forward(yl, xl, wl, NULL, TL, TIN, TOUT);
    linear_backward(dxl, dwl, dbl, rl, xl, wl, TL, TIN, TOUT);
    free(xl), free(wl), free(rl);
    CHECK(dbl + TOUT == out + total);
    *n = total;
    return out;
}

static void test_thread_counts(void) {
    size_t n;
    engine_set_num_threads(1);
    float *one = run_all(&n);
    engine_set_num_threads(2);
    float *two = run_all(&n), *again = run_all(&n);
    CHECK(same_bits(one, two, n));   /* 1 and 2 threads: the same bits */
    CHECK(same_bits(two, again, n)); /* and run to run */
    printf("threads: 1 vs 2 %s, run to run %s (%zu values)\n",
           same_bits(one, two, n) ? "identical" : "DIFFER",
           same_bits(two, again, n) ? "identical" : "DIFFER", n);
    free(one), free(two), free(again);
}

int main(void) {
    engine_set_num_threads(2);
    printf("OpenBLAS kernels: %s\n", openblas_get_corename());
    test_fast_expf();
    /* conv: {B, Cin, H, W, Cout, k, stride} */
    test_conv((ConvShape){2, 3, 6, 6, 4, 3, 1}, 1, 400);
    test_conv((ConvShape){2, 3, 7, 5, 4, 3, 2}, 0, 400);  /* odd H, W */
    test_conv((ConvShape){2, 3, 6, 6, 4, 3, 2}, 1, 400);  /* even H, W */
    test_conv((ConvShape){3, 4, 5, 5, 3, 1, 1}, 1, 400);  /* 1x1, several images per GEMM */
    test_conv((ConvShape){2, 4, 7, 7, 3, 1, 2}, 0, 400);  /* 1x1 stride 2 */
    test_conv((ConvShape){3, 4, 14, 14, 5, 1, 1}, 1, 120); /* 1x1 direct GEMM on x */
    test_conv((ConvShape){2, 3, 28, 28, 4, 3, 1}, 1, 120); /* one image per GEMM: row shifts */
    test_conv((ConvShape){2, 3, 12, 17, 5, 3, 1}, 0, 120); /* row shifts, not square */
    test_conv((ConvShape){40, 3, 7, 7, 4, 3, 1}, 1, 120);  /* 10 chunks, 8 dw slots */
    test_conv((ConvShape){23, 2, 4, 4, 3, 3, 2}, 0, 120);  /* uneven chunks, 2x2 output */
    test_conv((ConvShape){3, 5, 15, 13, 4, 3, 2}, 1, 120); /* odd, not square */
    test_linear(5, 7, 6);
    test_linear(3, 70, 130); /* several column blocks */
    test_groupnorm(2, 6, 10, 3, 0, 1e-2f);
    test_groupnorm(2, 6, 10, 3, 1, 1e-2f);
    test_groupnorm(3, 8, 49, 4, 1, 1e-2f);
    test_groupnorm(1, 2, 8300, 1, 1, 4e-2f); /* a group over GN_CACHE values: dz recomputed */
    test_silu();
    test_data_movement();
    test_attention(2, 4, 6, 400);
    test_attention(2, 8, 49, 150);
    test_mse_and_vectors();
    test_timestep_embedding();
    test_thread_counts();
    workspace_free(&g_ws);
    return test_finish();
}
