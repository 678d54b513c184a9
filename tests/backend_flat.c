/* test_backend_ops' cases for the flat-buffer ops of the engine table (optimiser, EMA,
 * diffusion, samplers, gradient matching, pooling), each with its reference in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ref.h"
#include "backend_test.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/util.h"

#define NFLAT 100003 /* above the CPU kernels' parallel threshold, not a multiple of 8 */

/* y op= x: add, axpy, axpby, waxpy, scale, clamp, ema_update, guidance, ddim_step, ddpm_step */
static void case_elementwise(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    float *x = rand_host(n, 1), *y = rand_host(n, 1), *z = rand_host(n, 1);
    float *dx = to_dev(e, x, n), *dy = to_dev(e, y, n), *dz = to_dev(e, z, n), *dw = engine_xalloc_floats(e, n);
    const float a = 0.37f, b = -1.25f, decay = 0.999f;
    float *ddecay = to_dev(e, &decay, 1); /* ema_update reads its decay from engine memory */
    float *out = dy;
    switch (v) {
    case 0: e->ops->add(e, dy, dx, n); break;
    case 1: e->ops->axpy(e, dy, a, dx, n); break;
    case 2: e->ops->axpby(e, dy, a, dx, b, n); break;
    case 3: e->ops->waxpy(e, dw, a, dx, dy, n), out = dw; break;
    case 4: e->ops->scale(e, dy, b, n); break;
    case 5: e->ops->clamp(e, dy, -0.5f, 0.75f, n); break;
    case 6: e->ops->ema_update(e, dy, dx, ddecay, n); break;
    case 7: e->ops->guidance(e, dw, dx, dy, 3.0f, n), out = dw; break;
    case 8: e->ops->ddim_step(e, dy, dx, n, 0.6f, 0.8f, 0.9f, 0.43588989f); break;
    case 9: e->ops->ddpm_step(e, dy, dx, dz, n, 0.02f, 1.01f, 0.1f); break;
    case 10: e->ops->ddpm_step(e, dy, dx, NULL, n, 0.02f, 1.01f, 0.0f); break;
    }
    take(e, got, out, n);
    for (size_t i = 0; ref && i < n; i++) {
        const double X = x[i], Y = y[i], Z = z[i];
        double r = 0;
        switch (v) {
        case 0: r = Y + X; break;
        case 1: r = Y + a * X; break;
        case 2: r = a * X + b * Y; break;
        case 3: r = a * X + Y; break;
        case 4: r = b * Y; break;
        case 5: r = Y < -0.5 ? -0.5 : Y > 0.75 ? 0.75 : Y; break;
        case 6: r = (double)0.999f * Y + (1.0 - (double)0.999f) * X; break;
        case 7: r = Y + 3.0 * (X - Y); break;
        case 8: r = 0.9 * ((Y - 0.6 * X) / 0.8) + (double)0.43588989f * X; break;
        case 9: r = (Y - (double)0.02f * X) * (double)1.01f + (double)0.1f * Z; break;
        case 10: r = (Y - (double)0.02f * X) * (double)1.01f; break;
        }
        vec_put(ref, r);
    }
    if (out != dy) engine_free(e, dy);
    if (out != dw) engine_free(e, dw);
    engine_free(e, dx), engine_free(e, dz), engine_free(e, ddecay);
    free(x), free(y), free(z);
}

/* sum_sq and clip_grad_norm (v 1: clipping, v 2: under the limit; v 3, 4: the same with
 * clip_grad_norm_to) */
static void case_norms(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    float *g = rand_host(n, 0.01f);
    float *dg = to_dev(e, g, n);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    if (v == 0) {
        vec_put(got, e->ops->sum_sq(e, dg, n));
        engine_free(e, dg);
        if (ref) vec_put(ref, ss);
    } else {
        const double max = v == 1 || v == 3 ? 0.5 * sqrt(ss) : 2 * sqrt(ss);
        if (v <= 2) {
            vec_put(got, e->ops->clip_grad_norm(e, dg, n, max));
        } else { /* clip_grad_norm_to: the norm on the device, downloaded */
            double *dnorm = NULL, h = NAN;
            if (engine_alloc(e, (void **)&dnorm, sizeof *dnorm) == D2C_OK) {
                e->ops->clip_grad_norm_to(e, dg, n, max, dnorm);
                e->ops->download(e, &h, dnorm, sizeof h);
                engine_free(e, dnorm);
            }
            vec_put(got, h);
        }
        take(e, got, dg, n);
        if (ref) {
            const double norm = sqrt(ss), c = norm > max ? max / (norm + 1e-6) : 1.0;
            vec_put(ref, norm);
            for (size_t i = 0; i < n; i++) vec_put(ref, g[i] * c);
        }
    }
    free(g);
}

/* three Adam steps of torch.optim.Adam (lr 1e-3, betas 0.9 0.999, eps 1e-8) */
static void case_adam(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = 1e-3f;
    float *p = rand_host(n, 1), *g0 = rand_host(n, 0.1f);
    float *dp = to_dev(e, p, n), *dg = to_dev(e, g0, n), *dm = engine_xalloc_floats(e, n), *dv = engine_xalloc_floats(e, n);
    float *dc = engine_xalloc_floats(e, 2);
    double *rp = xmalloc(n * sizeof *rp), *rm = xcalloc(n, sizeof *rm), *rv = xcalloc(n, sizeof *rv);
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    for (int t = 1; t <= 3; t++) {
        const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
        const float coef[2] = {(float)(lr / bc1), (float)sqrt(bc2)}; /* read from engine memory */
        engine_upload_floats(e, dc, coef, 2);
        e->ops->adam_step(e, dp, dg, dm, dv, n, b1, b2, eps, dc);
        for (size_t i = 0; ref && i < n; i++) {
            const double gi = g0[i];
            rm[i] = b1 * rm[i] + (1 - (double)b1) * gi;
            rv[i] = b2 * rv[i] + (1 - (double)b2) * gi * gi;
            rp[i] -= lr / bc1 * rm[i] / (sqrt(rv[i]) / sqrt(bc2) + eps);
        }
    }
    take(e, got, dp, n), take(e, got, dm, n), take(e, got, dv, n);
    if (ref) vec_put_d(ref, rp, n), vec_put_d(ref, rm, n), vec_put_d(ref, rv, n);
    engine_free(e, dg), engine_free(e, dc);
    free(p), free(g0), free(rp), free(rm), free(rv);
}

/* q_sample and its backward, per-image coefficients from alpha_bar[t_b] */
static void case_q_sample(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 5, T = 1000;
    const size_t D = 301, n = (size_t)B * D;
    const int64_t t[5] = {0, 999, 10, 500, 10};
    float *ab = xmalloc_floats(T);
    for (int i = 0; i < T; i++) ab[i] = (float)exp(-5.0 * i / T);
    float *x0 = rand_host(n, 1), *eps = rand_host(n, 1), *gx = rand_host(n, 1);
    float *dx0 = to_dev(e, x0, n), *deps = to_dev(e, eps, n), *dgx = to_dev(e, gx, n), *dxt = engine_xalloc_floats(e, n);
    if (v == 0) {
        e->ops->q_sample(e, dxt, dx0, deps, t, ab, B, D);
        take(e, got, dxt, n);
        engine_free(e, dgx);
    } else {
        e->ops->q_sample_backward(e, dgx, deps, t, ab, B, D);
        take(e, got, dgx, n);
        engine_free(e, dxt);
    }
    for (size_t i = 0; ref && i < n; i++) {
        const double a = ab[t[i / D]];
        vec_put(ref, v == 0 ? sqrt(a) * x0[i] + sqrt(1 - a) * eps[i] : gx[i] + sqrt(a) * eps[i]);
    }
    engine_free(e, dx0), engine_free(e, deps);
    free(ab), free(x0), free(eps), free(gx);
}

/* one double of engine memory, downloaded (NaN when it cannot be allocated) */
static double *dev_double(Engine *e) {
    double *d = NULL;
    return engine_alloc(e, (void **)&d, sizeof *d) == D2C_OK ? d : NULL;
}
static double take_double(Engine *e, double *d) {
    double h = NAN;
    if (d) e->ops->download(e, &h, d, sizeof h);
    engine_free(e, d);
    return h;
}

/* the layer-wise distance over three tensors of rows in a buffer with gaps (v 1: one side
 * of the derivative only; v 2: layerwise_distance_to, both derivatives) */
static void case_layerwise(Engine *e, Vec *got, Vec *ref, int v) {
    const EngineRows rows[3] = {{10, 6, 50}, {400, 32, 9}, {800, 3, 1000}};
    const size_t n = 4000;
    float *a = rand_host(n, 1), *b = rand_host(n, 1);
    for (size_t j = 0; j < 50; j++) b[10 + j] = 0.0f; /* a zero row: |b| = 0 */
    float *da = to_dev(e, a, n), *db = to_dev(e, b, n), *dva = to_dev(e, a, n), *dvb = to_dev(e, b, n);
    if (v == 2) {
        double *d = dev_double(e);
        if (d) e->ops->layerwise_distance_to(e, rows, 3, da, db, dva, dvb, n, d);
        vec_put(got, take_double(e, d));
        v = 0;
    } else {
        vec_put(got, e->ops->layerwise_distance(e, rows, 3, da, db, v ? NULL : dva, dvb, n));
    }
    if (!v) take(e, got, dva, n);
    else engine_free(e, dva);
    take(e, got, dvb, n);
    if (ref) {
        double *va = xcalloc(n, sizeof *va), *vb = xcalloc(n, sizeof *vb), dist = 0;
        for (int s = 0; s < 3; s++)
            for (int r = 0; r < rows[s].rows; r++) {
                const size_t o = rows[s].offset + (size_t)r * rows[s].cols;
                double dot = 0, na = 0, nb = 0;
                for (size_t j = 0; j < rows[s].cols; j++) {
                    dot += (double)a[o + j] * b[o + j];
                    na += (double)a[o + j] * a[o + j];
                    nb += (double)b[o + j] * b[o + j];
                }
                na = sqrt(na), nb = sqrt(nb);
                const double den = na * nb + 1e-6;
                dist += 1 - dot / den;
                for (size_t j = 0; j < rows[s].cols; j++) {
                    vb[o + j] = -a[o + j] / den + (nb > 0 ? dot * na / (nb * den * den) : 0) * b[o + j];
                    va[o + j] = -b[o + j] / den + (na > 0 ? dot * nb / (na * den * den) : 0) * a[o + j];
                }
            }
        vec_put(ref, dist);
        if (!v) vec_put_d(ref, va, n);
        vec_put_d(ref, vb, n);
        free(va), free(vb);
    }
    engine_free(e, da), engine_free(e, db);
    free(a), free(b);
}

/* the finite-difference helpers: fd_coef (v 0: a random direction, v 1: zero), waxpy_at
 * and mse_backward_div with its coefficients (v 2), feature_gap (v 3: both outputs, v 4:
 * the gradient alone) */
static void case_fd(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    if (v <= 1) {
        float *x = rand_host(n, 0.01f);
        if (v == 1) memset(x, 0, n * sizeof *x);
        float *dx = to_dev(e, x, n), *dc = engine_xalloc_floats(e, 2);
        e->ops->fd_coef(e, dc, dx, n, 0.003);
        take(e, got, dc, 2);
        engine_free(e, dx);
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
        const double eps = ss > 0 ? 0.003 / sqrt(ss) : 0;
        if (ref) vec_put(ref, eps), vec_put(ref, 2 * eps);
        free(x);
    } else if (v == 2) {
        float *x = rand_host(n, 1), *y = rand_host(n, 1), *p = rand_host(n, 1), *t = rand_host(n, 1);
        float *d = rand_host(n, 1);
        const float coef[2] = {0.0123f, 0.0246f}; /* [eps, 2 eps] */
        float *dc = to_dev(e, coef, 2), *dx = to_dev(e, x, n), *dy = to_dev(e, y, n), *dw = engine_xalloc_floats(e, n);
        float *dp = to_dev(e, p, n), *dt = to_dev(e, t, n), *dd = to_dev(e, d, n);
        e->ops->waxpy_at(e, dw, dc, -1.0f, dx, dy, n);
        e->ops->mse_backward_div(e, dd, dp, dt, n, -0.5f, dc + 1);
        take(e, got, dw, n);
        take(e, got, dd, n);
        for (size_t i = 0; ref && i < n; i++) vec_put(ref, (double)y[i] - (double)coef[0] * x[i]);
        for (size_t i = 0; ref && i < n; i++)
            vec_put(ref, (double)d[i] + (-0.5 / (double)coef[1]) * 2.0 * ((double)p[i] - t[i]) / (double)n);
        engine_free(e, dc), engine_free(e, dx), engine_free(e, dy), engine_free(e, dp), engine_free(e, dt);
        free(x), free(y), free(p), free(t), free(d);
    } else {
        const int C = 37;
        float *fr = rand_host((size_t)C, 1), *fs = rand_host((size_t)C, 1);
        float *dfr = to_dev(e, fr, (size_t)C), *dfs = to_dev(e, fs, (size_t)C), *dg = engine_xalloc_floats(e, (size_t)C);
        double *dsq = v == 3 ? dev_double(e) : NULL;
        e->ops->feature_gap(e, dsq, dg, dfr, dfs, C, 0.7f, 49.0f);
        if (v == 3) vec_put(got, take_double(e, dsq));
        take(e, got, dg, (size_t)C);
        double sq = 0;
        for (int c = 0; c < C; c++) sq += ((double)fr[c] - fs[c]) * ((double)fr[c] - fs[c]);
        if (ref && v == 3) vec_put(ref, sq);
        for (int c = 0; ref && c < C; c++) vec_put(ref, 0.7 * ((double)fs[c] - fr[c]) / 49.0);
        engine_free(e, dfr), engine_free(e, dfs);
        free(fr), free(fs);
    }
}

/* channel_mean, channel_fill, row_mean, row_mean_backward */
static void case_pooling(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 3, C = 7;
    const size_t N = 37, n = (size_t)B * C * N;
    float *x = rand_host(n, 1), *c = rand_host((size_t)B * C, 1);
    float *dx = to_dev(e, x, n), *dc = to_dev(e, c, (size_t)B * C);
    switch (v) {
    case 0: e->ops->channel_mean(e, dc, dx, B, C, N), take(e, got, dc, (size_t)C), engine_free(e, dx); break;
    case 1: e->ops->channel_fill(e, dx, dc, B, C, N), take(e, got, dx, n), engine_free(e, dc); break;
    case 2: e->ops->row_mean(e, dc, dx, (size_t)B * C, N), take(e, got, dc, (size_t)B * C), engine_free(e, dx); break;
    case 3: e->ops->row_mean_backward(e, dx, dc, (size_t)B * C, N), take(e, got, dx, n), engine_free(e, dc); break;
    }
    for (int k = 0; ref && k < (v == 0 ? C : v == 2 ? B * C : (int)n); k++) {
        double s = 0;
        if (v == 0) {
            for (int b = 0; b < B; b++)
                for (size_t i = 0; i < N; i++) s += x[((size_t)b * C + k) * N + i];
            s /= (double)B * N;
        } else if (v == 2) {
            for (size_t i = 0; i < N; i++) s += x[(size_t)k * N + i];
            s /= (double)N;
        } else if (v == 1) {
            s = c[((size_t)k / N) % C];
        } else {
            s = c[(size_t)k / N] / (double)N;
        }
        vec_put(ref, s);
    }
    free(x), free(c);
}

/* fill_normal: the numbers of the host generator rng_fill_normal, from a fresh stream and
 * from one a few words in (v 1); the stream itself is not advanced */
static void case_fill_normal(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    Rng r = rng_stream(7, RNG_NOISE, 12345);
    if (v) (void)rng_u32(&r), (void)rng_u32(&r); /* two words in: a pair boundary, avail even */
    const Rng before = r;
    float *d = engine_xalloc_floats(e, n);
    e->ops->fill_normal(e, d, n, &r);
    take(e, got, d, n);
    vec_put(got, memcmp(&before, &r, sizeof r) == 0 ? 0.0 : 1.0);
    if (ref) {
        float *h = xmalloc_floats(n);
        Rng copy = before;
        rng_fill_normal(&copy, h, n);
        vec_put_f(ref, h, n);
        vec_put(ref, 0.0);
        free(h);
    }
}

/* graph_run: five calls of the same ops (timestep_embedding of a host t whose values change,
 * then acc += 0.5 y) under one key, graph_reset, a sixth call: acc and y after each. A backend
 * that replays recorded ops must upload each call's t (CUDA with D2C_CUDA_GRAPH=1: calls 3-5
 * are a capture and two replays). */
typedef struct {
    Engine *e;
    float *y, *acc;
    const int64_t *t;
    int B, dim;
} GraphCtx;

static void graph_ops(void *p) {
    GraphCtx *c = p;
    c->e->ops->timestep_embedding(c->e, c->y, c->t, c->B, c->dim);
    c->e->ops->axpy(c->e, c->acc, 0.5f, c->y, (size_t)c->B * c->dim);
}

static void case_graph(Engine *e, Vec *got, Vec *ref, int v) {
    (void)v;
    enum { B = 3, DIM = 16 };
    const size_t n = (size_t)B * DIM;
    int64_t t[B];
    GraphCtx c = {e, engine_xalloc_floats(e, n), engine_xalloc_floats(e, n), t, B, DIM};
    const uint64_t key[5] = {(uint64_t)(uintptr_t)c.y, (uint64_t)(uintptr_t)c.acc, (uint64_t)(uintptr_t)t, B, DIM};
    double racc[B * DIM] = {0}, ry[B * DIM];
    float *h = xmalloc_floats(n);
    for (int call = 0; call < 6; call++) {
        for (int b = 0; b < B; b++) t[b] = 37 * call + 11 * b + 1;
        if (call == 5) e->ops->graph_reset(e);
        e->ops->graph_run(e, key, 5, graph_ops, &c);
        engine_download_floats(e, h, c.acc, n);
        vec_put_f(got, h, n);
        engine_download_floats(e, h, c.y, n);
        vec_put_f(got, h, n);
        if (ref) {
            ref_timestep_embedding(ry, t, B, DIM);
            for (size_t i = 0; i < n; i++) racc[i] += 0.5 * ry[i];
            vec_put_d(ref, racc, n);
            vec_put_d(ref, ry, n);
        }
    }
    e->ops->graph_reset(e);
    free(h);
    engine_free(e, c.y);
    engine_free(e, c.acc);
}

const Case FLAT_CASES[] = {
    {"fill_normal (fresh stream)", "fill_normal", case_fill_normal, 0, 1e-6},
    {"fill_normal (two words in)", "fill_normal", case_fill_normal, 1, 1e-6},
    {"add", "add", case_elementwise, 0, 1e-6},
    {"axpy", "axpy", case_elementwise, 1, 1e-6},
    {"axpby", "axpby", case_elementwise, 2, 1e-6},
    {"waxpy", "waxpy", case_elementwise, 3, 1e-6},
    {"scale", "scale", case_elementwise, 4, 1e-6},
    {"clamp", "clamp", case_elementwise, 5, 0},
    {"ema_update", "ema_update", case_elementwise, 6, 1e-6},
    {"guidance", "guidance", case_elementwise, 7, 1e-6},
    {"ddim_step", "ddim_step", case_elementwise, 8, 1e-6},
    {"ddpm_step with noise", "ddpm_step", case_elementwise, 9, 1e-6},
    {"ddpm_step without noise", "ddpm_step", case_elementwise, 10, 1e-6},
    {"sum_sq", "sum_sq", case_norms, 0, 1e-12},
    {"clip_grad_norm clipping", "clip_grad_norm", case_norms, 1, 1e-6},
    {"clip_grad_norm under the limit", "clip_grad_norm", case_norms, 2, 1e-6},
    {"clip_grad_norm_to clipping", "clip_grad_norm_to", case_norms, 3, 1e-6},
    {"clip_grad_norm_to under the limit", "clip_grad_norm_to", case_norms, 4, 1e-6},
    {"adam_step x3", "adam_step", case_adam, 0, 1e-5},
    {"q_sample", "q_sample", case_q_sample, 0, 1e-6},
    {"q_sample_backward", "q_sample_backward", case_q_sample, 1, 1e-6},
    {"layerwise_distance (+ both derivatives)", "layerwise_distance", case_layerwise, 0, 1e-6},
    {"layerwise_distance (syn derivative)", "layerwise_distance", case_layerwise, 1, 1e-6},
    {"layerwise_distance_to (+ both derivatives)", "layerwise_distance_to", case_layerwise, 2, 1e-6},
    {"fd_coef", "fd_coef", case_fd, 0, 1e-6},
    {"fd_coef of zeros", "fd_coef", case_fd, 1, 0},
    {"waxpy_at, mse_backward_div", "waxpy_at,mse_backward_div", case_fd, 2, 1e-6},
    {"feature_gap", "feature_gap", case_fd, 3, 1e-6},
    {"feature_gap (gradient only)", "feature_gap", case_fd, 4, 1e-6},
    {"channel_mean", "channel_mean", case_pooling, 0, 1e-6},
    {"channel_fill", "channel_fill", case_pooling, 1, 0},
    {"row_mean", "row_mean", case_pooling, 2, 1e-6},
    {"row_mean_backward", "row_mean_backward", case_pooling, 3, 1e-6},
    {"graph_run x5, graph_reset, x1", "graph_run,graph_reset,timestep_embedding,axpy", case_graph, 0, 2e-4},
};
const int N_FLAT_CASES = (int)(sizeof FLAT_CASES / sizeof FLAT_CASES[0]);
