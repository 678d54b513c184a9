/* gpu_ops: times the CUDA backend's ops one by one at the default UNet's shapes (batch B,
 * base channels C, 28x28 images: levels of C at 28x28, 2C at 14x14 and 2C at 7x7 with
 * attention), for a per-kernel profile of where a train step's time goes. Each op runs
 * `iters` times after two warm-up calls, between engine syncs; printed: ms per call and
 * the rate (GFLOP/s for the GEMM ops, GB/s of compulsory traffic for the others).
 * Built only with -DD2C_CUDA=ON (bench/gpu_check.sh runs it):
 *   gpu_ops [--batch B] [--channels C] [--iters N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/util.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_engine.h"

static Engine *E;
static int iters = 20;

static float *dev_random(size_t n, uint64_t seed) {
    float *h = xmalloc_floats(n), *d = E->ops->alloc(E, n * sizeof(float));
    if (!d) {
        fprintf(stderr, "gpu_ops: out of device memory (%zu floats)\n", n);
        exit(1);
    }
    Rng r = rng_stream(seed, RNG_EVAL, 7);
    rng_fill_normal(&r, h, n);
    E->ops->upload(E, d, h, n * sizeof(float));
    free(h);
    return d;
}

static double t_start;
static void begin(void) {
    if (E->ops->sync(E) != D2C_OK) {
        fprintf(stderr, "gpu_ops: %s\n", d2c_last_error());
        exit(1);
    }
    t_start = now_seconds();
}
/* ms per call; prints the line */
static void end(const char *what, double flops, double bytes) {
    if (E->ops->sync(E) != D2C_OK) {
        fprintf(stderr, "gpu_ops: %s: %s\n", what, d2c_last_error());
        exit(1);
    }
    double ms = (now_seconds() - t_start) * 1e3 / iters;
    if (flops > 0)
        printf("%-44s %9.3f ms  %8.0f GFLOP/s\n", what, ms, flops / ms * 1e-6);
    else
        printf("%-44s %9.3f ms  %8.0f GB/s\n", what, ms, bytes / ms * 1e-6);
}
#define TIME(what, flops, bytes, call)                        \
    do {                                                      \
        for (int w_ = 0; w_ < 2; w_++) call;                  \
        begin();                                              \
        for (int i_ = 0; i_ < iters; i_++) call;              \
        end(what, flops, bytes);                              \
    } while (0)

static void conv(int B, int Cin, int Cout, int H, int k, int stride) {
    ConvShape s = {B, Cin, H, H, Cout, k, stride};
    int Ho = conv_out_size(H, k, stride);
    size_t nx = (size_t)B * Cin * H * H, ny = (size_t)B * Cout * Ho * Ho, nw = (size_t)Cout * Cin * k * k;
    float *x = dev_random(nx, 1), *w = dev_random(nw, 2), *b = dev_random(Cout, 3), *y = dev_random(ny, 4);
    float *dx = dev_random(nx, 5), *dw = dev_random(nw, 6), *db = dev_random(Cout, 7);
    double flops = 2.0 * ny * Cin * k * k;
    char name[96];
    snprintf(name, sizeof name, "conv%dx%d/%d %3d->%-3d %2dx%-2d fwd", k, k, stride, Cin, Cout, H, H);
    TIME(name, flops, 0, E->ops->conv2d_forward(E, y, x, w, b, s));
    snprintf(name, sizeof name, "conv%dx%d/%d %3d->%-3d %2dx%-2d bwd", k, k, stride, Cin, Cout, H, H);
    TIME(name, 2 * flops, 0, E->ops->conv2d_backward(E, dx, dw, db, y, x, w, s));
    float *bufs[] = {x, w, b, y, dx, dw, db};
    for (int i = 0; i < 7; i++) E->ops->free(E, bufs[i]);
}

static void groupnorm(int B, int C, int H, int G) {
    size_t n = (size_t)B * C * H * H;
    float *x = dev_random(n, 1), *y = dev_random(n, 2), *dx = dev_random(n, 3), *g = dev_random(C, 4);
    float *be = dev_random(C, 5), *dg = dev_random(C, 6), *db = dev_random(C, 7);
    float *mean = dev_random((size_t)B * G, 8), *rstd = dev_random((size_t)B * G, 9);
    char name[96];
    snprintf(name, sizeof name, "groupnorm+silu %3d %2dx%-2d fwd", C, H, H);
    TIME(name, 0, 8.0 * n, E->ops->groupnorm_forward(E, y, mean, rstd, x, g, be, B, C, H * H, G, 1));
    snprintf(name, sizeof name, "groupnorm+silu %3d %2dx%-2d bwd", C, H, H);
    TIME(name, 0, 16.0 * n, E->ops->groupnorm_backward(E, dx, dg, db, y, x, mean, rstd, g, be, B, C, H * H, G, 1));
    float *bufs[] = {x, y, dx, g, be, dg, db, mean, rstd};
    for (int i = 0; i < 9; i++) E->ops->free(E, bufs[i]);
}

static void attention(int B, int C, int H) {
    int N = H * H;
    size_t nq = (size_t)B * 3 * C * N, no = (size_t)B * C * N, na = (size_t)B * N * N;
    float *qkv = dev_random(nq, 1), *dqkv = dev_random(nq, 2), *out = dev_random(no, 3), *attn = dev_random(na, 4);
    double flops = 4.0 * B * (double)N * N * C;
    char name[96];
    snprintf(name, sizeof name, "attention C=%d N=%d fwd", C, N);
    TIME(name, flops, 0, E->ops->attention_forward(E, out, attn, qkv, B, C, N));
    snprintf(name, sizeof name, "attention C=%d N=%d bwd", C, N);
    TIME(name, 2 * flops, 0, E->ops->attention_backward(E, dqkv, out, qkv, attn, B, C, N));
    E->ops->free(E, qkv);
    E->ops->free(E, dqkv);
    E->ops->free(E, out);
    E->ops->free(E, attn);
}

static void flat(size_t P) {
    float *p = dev_random(P, 1), *g = dev_random(P, 2), *m = dev_random(P, 3), *v = dev_random(P, 4);
    E->ops->memzero(E, v, P * sizeof(float)); /* v >= 0 */
    char name[96];
    snprintf(name, sizeof name, "adam over %zu params", P);
    const float coef_host[3] = {1e-4f, 0.5f, 0.999f}; /* Adam's step size and bc2_sqrt, the EMA decay */
    float *coef = E->ops->alloc(E, sizeof coef_host);
    E->ops->upload(E, coef, coef_host, sizeof coef_host);
    TIME(name, 0, 28.0 * P, E->ops->adam_step(E, p, g, m, v, P, 0.9f, 0.999f, 1e-8f, coef));
    snprintf(name, sizeof name, "ema over %zu params", P);
    TIME(name, 0, 12.0 * P, E->ops->ema_update(E, m, p, coef + 2, P));
    snprintf(name, sizeof name, "sum_sq over %zu params (synchronises)", P);
    TIME(name, 0, 4.0 * P, (void)E->ops->sum_sq(E, g, P));
    E->ops->free(E, coef);
    E->ops->free(E, p);
    E->ops->free(E, g);
    E->ops->free(E, m);
    E->ops->free(E, v);
}

/* the device Philox (cu_fill_normal) against core/rng on the host: bits and time */
static void rng_check(size_t n) {
    float *h = xmalloc_floats(n), *g = xmalloc_floats(n), *d = E->ops->alloc(E, n * sizeof(float));
    if (!d) exit(1);
    for (int pass = 0; pass < 2; pass++) { /* a fresh stream, then one a word pair in */
        Rng r = rng_stream(1234, RNG_NOISE, 77 + pass);
        if (pass) (void)rng_normal(&r), (void)rng_normal(&r), (void)rng_normal(&r), (void)rng_normal(&r), (void)rng_u32(&r),
            (void)rng_u32(&r);
        Rng copy = r;
        double t0 = now_seconds();
        rng_fill_normal(&copy, h, n);
        double th = now_seconds() - t0;
        cu_fill_normal((CudaEngine *)E->impl, d, n, &r);
        begin();
        for (int i = 0; i < iters; i++) cu_fill_normal((CudaEngine *)E->impl, d, n, &r);
        if (E->ops->sync(E) != D2C_OK) {
            fprintf(stderr, "gpu_ops: fill_normal: %s\n", d2c_last_error());
            exit(1);
        }
        double td = (now_seconds() - t_start) / iters;
        E->ops->download(E, g, d, n * sizeof(float));
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&h[i], &g[i], sizeof(float)) != 0;
        printf("fill_normal %zu values (stream %s): %zu differ from the host's; device %.3f ms, host %.3f ms\n", n,
               pass ? "mid-buffer" : "fresh", diff, td * 1e3, th * 1e3);
    }
    free(h);
    free(g);
    E->ops->free(E, d);
}

int main(int argc, char **argv) {
    int B = 256, C = 32;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--channels")) C = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: gpu_ops [--batch B] [--channels C] [--iters N]\n");
            return 2;
        }
    }
    if (B < 1 || C < 2 || iters < 1) {
        fprintf(stderr, "gpu_ops: --batch, --channels and --iters must be positive\n");
        return 2;
    }
    if (engine_cuda_create(&E) != D2C_OK) {
        fprintf(stderr, "gpu_ops: %s\n", d2c_last_error());
        return 2;
    }
    printf("gpu_ops: %s, B=%d C=%d, %d calls per op\n", cu_device_name((CudaEngine *)E->impl), B, C, iters);
    conv(B, 1, C, 28, 3, 1);
    conv(B, C, C, 28, 3, 1);
    conv(B, C, C, 28, 3, 2);
    conv(B, C, 2 * C, 14, 3, 1);
    conv(B, 2 * C, 2 * C, 14, 3, 1);
    conv(B, 2 * C, 2 * C, 7, 3, 1);
    conv(B, C, 2 * C, 14, 1, 1);
    conv(B, 2 * C, 6 * C, 7, 1, 1);
    groupnorm(B, C, 28, 8);
    groupnorm(B, 2 * C, 14, 8);
    attention(B, 2 * C, 7);
    flat((size_t)2 << 20);
    rng_check((size_t)B * 784 + 3);
    E->ops->destroy(E);
    return 0;
}
