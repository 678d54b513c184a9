/* test_backend_ops' cases: one function per engine op (or forward/backward pair), run on
 * an engine with random inputs, and with its naive double-precision reference written
 * out here or in backend_ref.c. Gradient buffers start random: backward must add to them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ref.h"
#include "backend_test.h"
#include "core/status.h"
#include "core/util.h"
#include "testing.h"

#define NFLAT 100003 /* above the CPU kernels' parallel threshold, not a multiple of 8 */

static double *dcopy(const float *x, size_t n) {
    double *d = xmalloc(n * sizeof *d + 1);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* ---------------------------------------------------------------- memory */

static void case_memory(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = 1001;
    float *h = rand_host(n, 1.0f), *back = xmalloc_floats(n);
    float *a = NULL, *b = NULL, *z = NULL;
    test_require_ok(engine_alloc(e, (void **)&a, n * sizeof(float)));
    test_require_ok(engine_alloc(e, (void **)&b, n * sizeof(float)));
    test_require_ok(engine_alloc(e, (void **)&z, n * sizeof(float)));
    e->ops->upload(e, a, h, n * sizeof(float));
    e->ops->copy(e, b, a, n * sizeof(float));
    e->ops->memzero(e, z, n * sizeof(float));
    float *stage = e->ops->host_alloc(e, n * sizeof(float));
    e->ops->download(e, stage, b, n * sizeof(float));
    memcpy(back, stage, n * sizeof(float));
    e->ops->host_free(e, stage);
    e->ops->host_free(e, NULL);
    vec_put_f(got, back, n);
    e->ops->download(e, back, z, n * sizeof(float));
    vec_put_f(got, back, n);
    vec_put(got, e->ops->sync(e) == D2C_OK ? 0.0 : 1.0);
    e->ops->free(e, a);
    e->ops->free(e, b);
    e->ops->free(e, z);
    e->ops->free(e, NULL);
    if (ref) {
        vec_put_f(ref, h, n);
        for (size_t i = 0; i <= n; i++) vec_put(ref, 0.0);
    }
    free(h);
    free(back);
}

/* ---------------------------------------------------------------- conv2d, linear */

static ConvShape conv_variant(int v) {
    static const ConvShape s[] = {{2, 3, 7, 7, 4, 3, 1}, {2, 3, 7, 7, 4, 3, 2}, {2, 5, 6, 6, 3, 1, 1}, {1, 4, 8, 5, 6, 3, 2}};
    return s[v];
}

static void case_conv_fwd(Engine *e, Vec *got, Vec *ref, int v) {
    ConvShape s = conv_variant(v);
    const int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride);
    const size_t nx = (size_t)s.B * s.Cin * s.H * s.W, nw = (size_t)s.Cout * s.Cin * s.k * s.k,
                 ny = (size_t)s.B * s.Cout * Ho * Wo;
    float *x = rand_host(nx, 1), *w = rand_host(nw, 0.3f), *b = rand_host((size_t)s.Cout, 1);
    const int bias = v != 2;
    float *dx = to_dev(e, x, nx), *dw = to_dev(e, w, nw), *db = to_dev(e, b, (size_t)s.Cout), *dy = engine_xalloc_floats(e, ny);
    e->ops->conv2d_forward(e, dy, dx, dw, bias ? db : NULL, s);
    take(e, got, dy, ny);
    if (ref) {
        double *y = xmalloc(ny * sizeof *y);
        ref_conv2d_forward(y, x, w, bias ? b : NULL, s);
        vec_put_d(ref, y, ny);
        free(y);
    }
    engine_free(e, dx), engine_free(e, dw), engine_free(e, db);
    free(x), free(w), free(b);
}

static void case_conv_bwd(Engine *e, Vec *got, Vec *ref, int v) {
    ConvShape s = conv_variant(v);
    const int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride);
    const size_t nx = (size_t)s.B * s.Cin * s.H * s.W, nw = (size_t)s.Cout * s.Cin * s.k * s.k,
                 ny = (size_t)s.B * s.Cout * Ho * Wo;
    float *x = rand_host(nx, 1), *w = rand_host(nw, 0.3f), *g = rand_host(ny, 1);
    float *gx = rand_host(nx, 1), *gw = rand_host(nw, 1), *gb = rand_host((size_t)s.Cout, 1);
    const int only_dx = v == 3; /* the weight gradients not wanted */
    float *dx = to_dev(e, x, nx), *dw = to_dev(e, w, nw), *dg = to_dev(e, g, ny);
    float *dgx = to_dev(e, gx, nx), *dgw = to_dev(e, gw, nw), *dgb = to_dev(e, gb, (size_t)s.Cout);
    e->ops->conv2d_backward(e, dgx, only_dx ? NULL : dgw, only_dx ? NULL : dgb, dg, dx, dw, s);
    take(e, got, dgx, nx);
    take(e, got, dgw, nw);
    take(e, got, dgb, (size_t)s.Cout);
    if (ref) {
        double *rx = dcopy(gx, nx), *rw = dcopy(gw, nw), *rb = dcopy(gb, (size_t)s.Cout);
        ref_conv2d_backward(rx, only_dx ? NULL : rw, only_dx ? NULL : rb, g, x, w, s);
        vec_put_d(ref, rx, nx), vec_put_d(ref, rw, nw), vec_put_d(ref, rb, (size_t)s.Cout);
        free(rx), free(rw), free(rb);
    }
    engine_free(e, dx), engine_free(e, dw), engine_free(e, dg);
    free(x), free(w), free(g), free(gx), free(gw), free(gb);
}

/* the optional fused upsample2x + 3x3 conv against the naive conv of the upsampled x;
 * the scratch starts as garbage (a fused backend need not touch it) */
static void case_upsample_conv(Engine *e, Vec *got, Vec *ref, int v) {
    static const ConvShape shapes[] = {{2, 3, 10, 8, 5, 3, 1}, {1, 6, 4, 14, 4, 3, 1}};
    const ConvShape s = shapes[v];
    const size_t nx = (size_t)s.B * s.Cin * (s.H / 2) * (s.W / 2), nu = 4 * nx, nw = (size_t)s.Cout * s.Cin * 9,
                 ny = (size_t)s.B * s.Cout * s.H * s.W;
    float *x = rand_host(nx, 1), *w = rand_host(nw, 0.3f), *b = rand_host((size_t)s.Cout, 1), *u = rand_host(nu, 1);
    float *dx = to_dev(e, x, nx), *dw = to_dev(e, w, nw), *db = to_dev(e, b, (size_t)s.Cout), *du = to_dev(e, u, nu);
    float *dy = engine_xalloc_floats(e, ny);
    e->ops->upsample2x_conv2d_forward(e, dy, dx, dw, v == 0 ? db : NULL, s, du);
    take(e, got, dy, ny);
    if (ref) {
        for (int p = 0; p < s.B * s.Cin; p++) /* u = upsample2x(x) */
            for (int i = 0; i < s.H; i++)
                for (int j = 0; j < s.W; j++)
                    u[((size_t)p * s.H + i) * s.W + j] = x[((size_t)p * (s.H / 2) + i / 2) * (s.W / 2) + j / 2];
        double *y = xmalloc(ny * sizeof *y);
        ref_conv2d_forward(y, u, w, v == 0 ? b : NULL, s);
        vec_put_d(ref, y, ny);
        free(y);
    }
    engine_free(e, dx), engine_free(e, dw), engine_free(e, db), engine_free(e, du);
    free(x), free(w), free(b), free(u);
}

static void case_linear(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 5, in = 37, out = 19, bias = v != 1, bwd = v >= 2;
    float *x = rand_host((size_t)B * in, 1), *w = rand_host((size_t)out * in, 0.2f), *b = rand_host((size_t)out, 1);
    float *dx = to_dev(e, x, (size_t)B * in), *dw = to_dev(e, w, (size_t)out * in), *db = to_dev(e, b, (size_t)out);
    if (!bwd) {
        float *dy = engine_xalloc_floats(e, (size_t)B * out);
        e->ops->linear_forward(e, dy, dx, dw, bias ? db : NULL, B, in, out);
        take(e, got, dy, (size_t)B * out);
        if (ref) {
            double *y = xmalloc((size_t)B * out * sizeof *y);
            ref_linear_forward(y, x, w, bias ? b : NULL, B, in, out);
            vec_put_d(ref, y, (size_t)B * out);
            free(y);
        }
    } else {
        float *g = rand_host((size_t)B * out, 1), *gx = rand_host((size_t)B * in, 1), *gw = rand_host((size_t)out * in, 1),
              *gb = rand_host((size_t)out, 1);
        const int no_dx = v == 3;
        float *dg = to_dev(e, g, (size_t)B * out), *dgx = to_dev(e, gx, (size_t)B * in),
              *dgw = to_dev(e, gw, (size_t)out * in), *dgb = to_dev(e, gb, (size_t)out);
        e->ops->linear_backward(e, no_dx ? NULL : dgx, dgw, dgb, dg, dx, dw, B, in, out);
        take(e, got, dgx, (size_t)B * in), take(e, got, dgw, (size_t)out * in), take(e, got, dgb, (size_t)out);
        if (ref) {
            double *rx = dcopy(gx, (size_t)B * in), *rw = dcopy(gw, (size_t)out * in), *rb = dcopy(gb, (size_t)out);
            ref_linear_backward(no_dx ? NULL : rx, rw, rb, g, x, w, B, in, out);
            vec_put_d(ref, rx, (size_t)B * in), vec_put_d(ref, rw, (size_t)out * in), vec_put_d(ref, rb, (size_t)out);
            free(rx), free(rw), free(rb);
        }
        engine_free(e, dg);
        free(g), free(gx), free(gw), free(gb);
    }
    engine_free(e, dx), engine_free(e, dw), engine_free(e, db);
    free(x), free(w), free(b);
}

/* ---------------------------------------------------------------- groupnorm, silu */

/* v: bit 0 silu, bit 1 backward, v >> 2 the shape (B, C, N, G): besides the small one,
 * groups of more channels than the CUDA backend's block has warps (Cg 12 at 2352 values,
 * Cg 24 at 1176), rows not a multiple of 32 and a batch of one. Then the CUDA forward's
 * paths (groupnorm.cu; M = Cg*N values a group, float4 when 4 divides M): the UNet's
 * 28x28 C 32 layers (M 3136: registers, 4 chunks a thread) and its 96-channel ones (M 9408:
 * 8 chunks); M 147 (scalar, a short last chunk); rows shorter than a chunk (N 3 float4,
 * N 1 scalar); the loop path for M 18000 (float4) and 19995 (scalar) and for Cg 160 (more
 * channels than the register path stages); M 5005 (registers, 8 chunks, scalar) and M
 * 16384 (the largest group the register path holds, C 128 at 32x32). The first three
 * shapes cover registers with 1, 4 and 2 chunks a thread, float4, chunks across rows. */
static void case_groupnorm(Engine *e, Vec *got, Vec *ref, int v) {
    static const int shape[][4] = {{3, 16, 25, 4},   {1, 96, 196, 8}, {2, 48, 49, 2},   {8, 32, 784, 8},
                                   {2, 96, 784, 8},  {2, 15, 49, 5},  {2, 8, 3, 2},     {3, 10, 1, 2},
                                   {2, 6, 3000, 1},  {1, 5, 3999, 1}, {2, 160, 9, 1},   {1, 10, 1001, 2},
                                   {1, 128, 1024, 8}};
    const int *sh = shape[v >> 2], B = sh[0], C = sh[1], N = sh[2], G = sh[3], silu = v & 1, bwd = (v >> 1) & 1;
    const size_t n = (size_t)B * C * N, ng = (size_t)B * G;
    float *x = rand_host(n, 2), *gamma = rand_host((size_t)C, 1), *beta = rand_host((size_t)C, 1);
    for (size_t i = 0; i < n; i++) x[i] += 0.5f; /* a non-zero mean */
    float *dx = to_dev(e, x, n), *dgam = to_dev(e, gamma, (size_t)C), *dbet = to_dev(e, beta, (size_t)C);
    float *dy = engine_xalloc_floats(e, n), *dm = engine_xalloc_floats(e, ng), *dr = engine_xalloc_floats(e, ng);
    e->ops->groupnorm_forward(e, dy, dm, dr, dx, dgam, dbet, B, C, N, G, silu);
    if (!bwd) {
        take(e, got, dy, n), take(e, got, dm, ng), take(e, got, dr, ng);
        if (ref) {
            double *y = xmalloc(n * sizeof *y), *m = xmalloc(ng * sizeof *m), *r = xmalloc(ng * sizeof *r);
            ref_groupnorm_forward(y, m, r, x, gamma, beta, B, C, N, G, silu);
            vec_put_d(ref, y, n), vec_put_d(ref, m, ng), vec_put_d(ref, r, ng);
            free(y), free(m), free(r);
        }
    } else {
        float *g = rand_host(n, 1), *gx = rand_host(n, 1), *gg = rand_host((size_t)C, 1), *gb = rand_host((size_t)C, 1);
        float *dg = to_dev(e, g, n), *dgx = to_dev(e, gx, n), *dgg = to_dev(e, gg, (size_t)C), *dgb = to_dev(e, gb, (size_t)C);
        e->ops->groupnorm_backward(e, dgx, dgg, dgb, dg, dx, dm, dr, dgam, dbet, B, C, N, G, silu);
        take(e, got, dgx, n), take(e, got, dgg, (size_t)C), take(e, got, dgb, (size_t)C);
        if (ref) {
            double *rx = dcopy(gx, n), *rg = dcopy(gg, (size_t)C), *rb = dcopy(gb, (size_t)C);
            ref_groupnorm_backward(rx, rg, rb, g, x, gamma, beta, B, C, N, G, silu);
            vec_put_d(ref, rx, n), vec_put_d(ref, rg, (size_t)C), vec_put_d(ref, rb, (size_t)C);
            free(rx), free(rg), free(rb);
        }
        engine_free(e, dg), engine_free(e, dy), engine_free(e, dm), engine_free(e, dr);
        free(g), free(gx), free(gg), free(gb);
    }
    engine_free(e, dx), engine_free(e, dgam), engine_free(e, dbet);
    free(x), free(gamma), free(beta);
}

static void case_silu(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    float *x = rand_host(n, 4), *g = rand_host(n, 1), *gx = rand_host(n, 1);
    float *dx = to_dev(e, x, n), *out = to_dev(e, gx, n), *dg = to_dev(e, g, n);
    if (v == 0) e->ops->silu_forward(e, out, dx, n);
    else e->ops->silu_backward(e, out, dg, dx, n);
    take(e, got, out, n);
    for (size_t i = 0; ref && i < n; i++) vec_put(ref, v == 0 ? ref_silu(x[i]) : gx[i] + g[i] * ref_dsilu(x[i]));
    engine_free(e, dx), engine_free(e, dg);
    free(x), free(g), free(gx);
}

/* ---------------------------------------------------------------- shape ops */

static void case_channel_bias(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 3, C = 7, N = 33;
    const size_t n = (size_t)B * C * N;
    float *h = rand_host(n, 1), *b = rand_host((size_t)B * C, 1);
    float *dh = to_dev(e, h, n), *db = to_dev(e, b, (size_t)B * C);
    if (v == 0) {
        e->ops->add_channel_bias_forward(e, dh, db, B, C, N);
        take(e, got, dh, n);
        engine_free(e, db);
        for (size_t i = 0; ref && i < n; i++) vec_put(ref, (double)h[i] + b[i / N]);
    } else {
        e->ops->add_channel_bias_backward(e, db, dh, B, C, N);
        take(e, got, db, (size_t)B * C);
        engine_free(e, dh);
        for (int r = 0; ref && r < B * C; r++) {
            double s = b[r];
            for (int i = 0; i < N; i++) s += h[(size_t)r * N + i];
            vec_put(ref, s);
        }
    }
    free(h), free(b);
}

static void case_upsample(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 2, C = 3, H = 5, W = 4;
    const size_t nx = (size_t)B * C * H * W, ny = 4 * nx;
    float *x = rand_host(nx, 1), *y = rand_host(ny, 1);
    float *dx = to_dev(e, x, nx), *dy = to_dev(e, y, ny);
    if (v == 0) {
        e->ops->upsample2x_forward(e, dy, dx, B, C, H, W);
        take(e, got, dy, ny);
        engine_free(e, dx);
        for (int p = 0; ref && p < B * C; p++)
            for (int i = 0; i < 2 * H; i++)
                for (int j = 0; j < 2 * W; j++) vec_put(ref, x[((size_t)p * H + i / 2) * W + j / 2]);
    } else {
        e->ops->upsample2x_backward(e, dx, dy, B, C, H, W);
        take(e, got, dx, nx);
        engine_free(e, dy);
        for (int p = 0; ref && p < B * C; p++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double s = x[((size_t)p * H + i) * W + j];
                    for (int a = 0; a < 2; a++)
                        for (int c = 0; c < 2; c++) s += y[((size_t)p * 2 * H + 2 * i + a) * 2 * W + 2 * j + c];
                    vec_put(ref, s);
                }
    }
    free(x), free(y);
}

static void case_concat(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 3, Ca = 4, Cb = 5, N = 17;
    const size_t na = (size_t)B * Ca * N, nb = (size_t)B * Cb * N, ny = na + nb;
    float *a = rand_host(na, 1), *b = rand_host(nb, 1), *y = rand_host(ny, 1);
    float *da = to_dev(e, a, na), *db = to_dev(e, b, nb), *dy = to_dev(e, y, ny);
    if (v == 0) {
        e->ops->concat_channels_forward(e, dy, da, db, B, Ca, Cb, N);
        take(e, got, dy, ny);
        engine_free(e, da), engine_free(e, db);
        for (int i = 0; ref && i < B; i++) {
            for (size_t k = 0; k < (size_t)Ca * N; k++) vec_put(ref, a[(size_t)i * Ca * N + k]);
            for (size_t k = 0; k < (size_t)Cb * N; k++) vec_put(ref, b[(size_t)i * Cb * N + k]);
        }
    } else {
        e->ops->concat_channels_backward(e, da, db, dy, B, Ca, Cb, N);
        take(e, got, da, na), take(e, got, db, nb);
        engine_free(e, dy);
        for (size_t k = 0; ref && k < na; k++) vec_put(ref, (double)a[k] + y[(k / ((size_t)Ca * N)) * (Ca + Cb) * N + k % ((size_t)Ca * N)]);
        for (size_t k = 0; ref && k < nb; k++)
            vec_put(ref, (double)b[k] + y[(k / ((size_t)Cb * N)) * (Ca + Cb) * N + (size_t)Ca * N + k % ((size_t)Cb * N)]);
    }
    free(a), free(b), free(y);
}

static void case_attention(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 2, C = 8, N = 12;
    const size_t nq = (size_t)B * 3 * C * N, no = (size_t)B * C * N, na = (size_t)B * N * N;
    float *qkv = rand_host(nq, 1);
    float *dq = to_dev(e, qkv, nq), *dout = engine_xalloc_floats(e, no), *dattn = engine_xalloc_floats(e, na);
    e->ops->attention_forward(e, dout, dattn, dq, B, C, N);
    if (v == 0) {
        take(e, got, dout, no), take(e, got, dattn, na);
        if (ref) {
            double *o = xmalloc(no * sizeof *o), *a = xmalloc(na * sizeof *a);
            ref_attention_forward(o, a, qkv, B, C, N);
            vec_put_d(ref, o, no), vec_put_d(ref, a, na);
            free(o), free(a);
        }
    } else {
        float *g = rand_host(no, 1), *gq = rand_host(nq, 1);
        float *dg = to_dev(e, g, no), *dgq = to_dev(e, gq, nq);
        e->ops->attention_backward(e, dgq, dg, dq, dattn, B, C, N);
        take(e, got, dgq, nq);
        if (ref) {
            double *r = dcopy(gq, nq);
            ref_attention_backward(r, g, qkv, B, C, N);
            vec_put_d(ref, r, nq);
            free(r);
        }
        engine_free(e, dg), engine_free(e, dout), engine_free(e, dattn);
        free(g), free(gq);
    }
    engine_free(e, dq);
    free(qkv);
}

/* ---------------------------------------------------------------- embeddings, losses */

static void case_embedding(Engine *e, Vec *got, Vec *ref, int v) {
    const int rows = 11, E = 24, B = 9;
    const int64_t idx[9] = {3, 0, 10, 3, 7, 3, 10, 1, 0}; /* repeats accumulate */
    float *table = rand_host((size_t)rows * E, 1), *y = rand_host((size_t)B * E, 1);
    float *dt = to_dev(e, table, (size_t)rows * E), *dy = to_dev(e, y, (size_t)B * E);
    if (v == 0) {
        e->ops->embedding_forward(e, dy, dt, idx, B, E);
        take(e, got, dy, (size_t)B * E);
        engine_free(e, dt);
        for (int b = 0; ref && b < B; b++) vec_put_f(ref, table + (size_t)idx[b] * E, (size_t)E);
    } else {
        e->ops->embedding_backward(e, dt, dy, idx, B, E);
        take(e, got, dt, (size_t)rows * E);
        engine_free(e, dy);
        if (ref) {
            double *r = dcopy(table, (size_t)rows * E);
            for (int b = 0; b < B; b++)
                for (int k = 0; k < E; k++) r[(size_t)idx[b] * E + k] += y[(size_t)b * E + k];
            vec_put_d(ref, r, (size_t)rows * E);
            free(r);
        }
    }
    free(table), free(y);
}

static void case_timestep(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 6, dim = v ? 15 : 32;
    const int64_t t[6] = {0, 1, 17, 250, 731, 999};
    float *dy = engine_xalloc_floats(e, (size_t)B * dim);
    e->ops->timestep_embedding(e, dy, t, B, dim);
    take(e, got, dy, (size_t)B * dim);
    if (ref) {
        double *r = xmalloc((size_t)B * dim * sizeof *r);
        ref_timestep_embedding(r, t, B, dim);
        vec_put_d(ref, r, (size_t)B * dim);
        free(r);
    }
}

static void case_mse(Engine *e, Vec *got, Vec *ref, int v) {
    const size_t n = NFLAT;
    const float scale = 0.7f;
    float *p = rand_host(n, 1), *t = rand_host(n, 1), *g = rand_host(n, 1);
    float *dp = to_dev(e, p, n), *dt = to_dev(e, t, n), *dg = to_dev(e, g, n);
    if (v == 0) {
        vec_put(got, e->ops->mse_forward(e, dp, dt, n));
    } else if (v == 2) { /* mse_forward_to: the value on the device, downloaded */
        double *dout = NULL, h = NAN;
        if (engine_alloc(e, (void **)&dout, sizeof *dout) == D2C_OK) {
            e->ops->mse_forward_to(e, dout, dp, dt, n);
            e->ops->download(e, &h, dout, sizeof h);
            engine_free(e, dout);
        }
        vec_put(got, h);
    } else {
        e->ops->mse_backward(e, dg, dp, dt, n, scale);
    }
    if (v != 1) engine_free(e, dg);
    else take(e, got, dg, n);
    if (ref) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
        if (v != 1) vec_put(ref, s / (double)n);
        for (size_t i = 0; v == 1 && i < n; i++) vec_put(ref, g[i] + scale * 2.0 * ((double)p[i] - t[i]) / (double)n);
    }
    engine_free(e, dp), engine_free(e, dt);
    free(p), free(t), free(g);
}

static void case_softmax(Engine *e, Vec *got, Vec *ref, int v) {
    const int B = 7, K = 10;
    float *z = rand_host((size_t)B * K, 5);
    float *dz = to_dev(e, z, (size_t)B * K), *dp = engine_xalloc_floats(e, (size_t)B * K);
    e->ops->softmax_rows(e, dp, dz, B, K);
    take(e, got, dp, (size_t)B * K);
    for (int b = 0; ref && b < B; b++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += exp(z[b * K + k]);
        for (int k = 0; k < K; k++) vec_put(ref, exp(z[b * K + k]) / s);
    }
    engine_free(e, dz);
    free(z);
}

/* ---------------------------------------------------------------- the layer cases */

const Case LAYER_CASES[] = {
    {"memory: alloc upload copy download", "alloc,free,host_alloc,host_free,upload,download,copy,memzero,sync,destroy",
     case_memory, 0, 0},
    {"conv2d_forward k3 s1 bias", "conv2d_forward", case_conv_fwd, 0, 1e-5},
    {"conv2d_forward k3 s2 bias", "conv2d_forward", case_conv_fwd, 1, 1e-5},
    {"conv2d_forward k1 s1 no bias", "conv2d_forward", case_conv_fwd, 2, 1e-5},
    {"conv2d_forward k3 s2 8x5", "conv2d_forward", case_conv_fwd, 3, 1e-5},
    {"conv2d_backward k3 s1", "conv2d_backward", case_conv_bwd, 0, 1e-5},
    {"conv2d_backward k3 s2", "conv2d_backward", case_conv_bwd, 1, 1e-5},
    {"conv2d_backward k1 s1", "conv2d_backward", case_conv_bwd, 2, 1e-5},
    {"conv2d_backward k3 s2 dx only", "conv2d_backward", case_conv_bwd, 3, 1e-5},
    {"linear_forward bias", "linear_forward", case_linear, 0, 1e-5},
    {"linear_forward no bias", "linear_forward", case_linear, 1, 1e-5},
    {"linear_backward", "linear_backward", case_linear, 2, 1e-5},
    {"linear_backward no dx", "linear_backward", case_linear, 3, 1e-5},
    {"groupnorm_forward", "groupnorm_forward", case_groupnorm, 0, 1e-5},
    {"groupnorm_forward +silu", "groupnorm_forward", case_groupnorm, 1, 1e-5},
    {"groupnorm_backward", "groupnorm_forward,groupnorm_backward", case_groupnorm, 2, 1e-5},
    {"groupnorm_backward +silu", "groupnorm_forward,groupnorm_backward", case_groupnorm, 3, 1e-5},
    {"groupnorm_forward Cg 12 N 196", "groupnorm_forward", case_groupnorm, 4, 1e-5},
    {"groupnorm_backward +silu Cg 12 N 196", "groupnorm_forward,groupnorm_backward", case_groupnorm, 7, 1e-5},
    {"groupnorm_forward +silu Cg 24 N 49", "groupnorm_forward", case_groupnorm, 9, 1e-5},
    {"groupnorm_backward Cg 24 N 49", "groupnorm_forward,groupnorm_backward", case_groupnorm, 10, 1e-5},
    {"groupnorm_forward Cg 4 N 784 (UNet 28x28)", "groupnorm_forward", case_groupnorm, 12, 1e-5},
    {"groupnorm_forward +silu Cg 4 N 784 (UNet 28x28)", "groupnorm_forward", case_groupnorm, 13, 1e-5},
    {"groupnorm_forward +silu Cg 12 N 784", "groupnorm_forward", case_groupnorm, 17, 1e-5},
    {"groupnorm_forward Cg 3 N 49", "groupnorm_forward", case_groupnorm, 20, 1e-5},
    {"groupnorm_backward +silu Cg 3 N 49", "groupnorm_forward,groupnorm_backward", case_groupnorm, 23, 1e-5},
    {"groupnorm_forward +silu Cg 4 N 3", "groupnorm_forward", case_groupnorm, 25, 1e-5},
    {"groupnorm_forward Cg 5 N 1", "groupnorm_forward", case_groupnorm, 28, 1e-5},
    {"groupnorm_forward +silu Cg 6 N 3000", "groupnorm_forward", case_groupnorm, 33, 1e-5},
    {"groupnorm_forward Cg 5 N 3999", "groupnorm_forward", case_groupnorm, 36, 1e-5},
    {"groupnorm_backward Cg 5 N 3999", "groupnorm_forward,groupnorm_backward", case_groupnorm, 38, 1e-5},
    {"groupnorm_forward +silu Cg 160 N 9", "groupnorm_forward", case_groupnorm, 41, 1e-5},
    {"groupnorm_forward +silu Cg 5 N 1001", "groupnorm_forward", case_groupnorm, 45, 1e-5},
    {"groupnorm_forward Cg 16 N 1024", "groupnorm_forward", case_groupnorm, 48, 1e-5},
    {"silu_forward", "silu_forward", case_silu, 0, 1e-6},
    {"silu_backward", "silu_backward", case_silu, 1, 1e-6},
    {"add_channel_bias_forward", "add_channel_bias_forward", case_channel_bias, 0, 1e-6},
    {"add_channel_bias_backward", "add_channel_bias_backward", case_channel_bias, 1, 1e-6},
    {"upsample2x_forward", "upsample2x_forward", case_upsample, 0, 0},
    {"upsample2x_backward", "upsample2x_backward", case_upsample, 1, 1e-6},
    {"upsample2x_conv2d_forward bias", "upsample2x_conv2d_forward", case_upsample_conv, 0, 1e-5},
    {"upsample2x_conv2d_forward 4x14", "upsample2x_conv2d_forward", case_upsample_conv, 1, 1e-5},
    {"concat_channels_forward", "concat_channels_forward", case_concat, 0, 0},
    {"concat_channels_backward", "concat_channels_backward", case_concat, 1, 1e-6},
    {"attention_forward (out, attn)", "attention_forward", case_attention, 0, 1e-5},
    {"attention_backward", "attention_forward,attention_backward", case_attention, 1, 1e-5},
    {"embedding_forward", "embedding_forward", case_embedding, 0, 0},
    {"embedding_backward (repeated rows)", "embedding_backward", case_embedding, 1, 1e-6},
    {"timestep_embedding dim 32", "timestep_embedding", case_timestep, 0, 2e-4},
    {"timestep_embedding dim 15", "timestep_embedding", case_timestep, 1, 2e-4},
    {"mse_forward", "mse_forward", case_mse, 0, 1e-6},
    {"mse_backward", "mse_backward", case_mse, 1, 1e-6},
    {"mse_forward_to", "mse_forward_to", case_mse, 2, 1e-6},
    {"softmax_rows", "softmax_rows", case_softmax, 0, 1e-6},
};
const int N_LAYER_CASES = (int)(sizeof LAYER_CASES / sizeof LAYER_CASES[0]);
