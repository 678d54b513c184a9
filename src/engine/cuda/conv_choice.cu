/* D2C_CUDA_CONV_ALGO=cached (the default): the convolution algorithm per shape and
 * direction (forward, backward-data, backward-filter), measured once and kept in a file.
 *
 * On the first use of a shape and direction the engine looks the choice up in the cache
 * file (engine/algo_cache.h; D2C_CUDA_ALGO_CACHE, else $XDG_CACHE_HOME/d2c/ or
 * ~/.cache/d2c/conv_algos.txt), keyed by the GPU's name and SM count, the cuDNN and cuBLAS
 * versions, the TF32 setting and D2C_CUDA_CONV. Not there: every candidate runs once (to
 * warm up) and then REPS times between two events on the op's real inputs, into a
 * scratch output; the fastest wins (ties: the earlier candidate) and is written to the file.
 * Candidates: cuDNN's deterministic algorithms (cu_cudnn_candidates; with D2C_CUDA_CONV
 * auto or cudnn) and, with auto, d2c's im2col + cuBLAS path (cu_conv_gemm_dir), for the
 * weight gradient in two forms (one GEMM over the batch, or per-image GEMMs summed in
 * image order), and, where Cin <= 4 or Cout <= 4 (k <= 3), d2c's direct kernels
 * (conv_direct.cu, "direct": a thread per output pixel and group of up to 4 channels, a
 * gather for dx, a two-level sum in double for dw). In this order: gemm, gemm_split,
 * direct, then cuDNN's. All are deterministic, so once the file holds a shape's choices a
 * seed gives the same bits run after run. An entry the engine cannot use (a hand edit, an
 * algorithm this cuDNN does not list as deterministic) is measured again, with a warning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_private.cuh"

extern "C" {
#include "core/util.h"
#include "engine/algo_cache.h"
}

#define SLOTS 1024 /* open addressing; more distinct (shape, direction) pairs are measured again */
#define REPS 3
#define MAX_CANDIDATES 24

enum { IMPL_GEMM = 0, IMPL_GEMM_SPLIT = 1, IMPL_CUDNN = 2, IMPL_DIRECT = 3 };

typedef struct {
    ConvShape s;
    int dir, used, impl, algo;
} Choice;

typedef struct {
    Choice slot[SLOTS];
    AlgoCache *file;
    int full_warned;
} Choices;

static const char *const DIR_NAMES[3] = {"fwd", "bwd_data", "bwd_filter"};

void cu_conv_choice_destroy(CudaEngine *e) {
    Choices *c = (Choices *)e->choices;
    if (!c) return;
    algo_cache_close(c->file);
    free(c);
    e->choices = NULL;
}

static unsigned hash_of(ConvShape s, int dir) {
    const int v[8] = {s.B, s.Cin, s.H, s.W, s.Cout, s.k, s.stride, dir};
    unsigned h = 2166136261u;
    for (int i = 0; i < 8; i++) h = (h ^ (unsigned)v[i]) * 16777619u;
    return h;
}

static int same(const Choice *c, ConvShape s, int dir) {
    return c->dir == dir && c->s.B == s.B && c->s.Cin == s.Cin && c->s.H == s.H && c->s.W == s.W &&
           c->s.Cout == s.Cout && c->s.k == s.k && c->s.stride == s.stride;
}

static Choices *choices(CudaEngine *e) {
    if (e->choices) return (Choices *)e->choices;
    Choices *c = (Choices *)calloc(1, sizeof *c);
    if (!c) {
        cu_fail(e, D2C_ERR_FAIL, "cuda: out of host memory");
        return NULL;
    }
    int blas = 0;
    cublasGetVersion(e->blas, &blas);
    char dev[512];
    snprintf(dev, sizeof dev, "%s cudnn %zu cublas %d tf32 %d conv %s", e->name, cu_cudnn_version(), blas, e->tf32,
             e->conv_mode == CU_CONV_CUDNN ? "cudnn" : "auto");
    c->file = algo_cache_open(e->algo_path[0] ? e->algo_path : NULL, dev);
    e->choices = c;
    return c;
}

static void key_of(char *buf, size_t cap, ConvShape s, int dir) {
    snprintf(buf, cap, "conv%dx%d/%d B%d %d->%d %dx%d %s", s.k, s.k, s.stride, s.B, s.Cin, s.Cout, s.H, s.W,
             DIR_NAMES[dir]);
}

static void value_of(char *buf, size_t cap, int impl, int algo) {
    if (impl == IMPL_CUDNN)
        snprintf(buf, cap, "cudnn:%d", algo);
    else
        snprintf(buf, cap, "%s", impl == IMPL_GEMM ? "gemm" : impl == IMPL_DIRECT ? "direct" : "gemm_split");
}

/* The candidates of (s, dir), in a fixed order: the GEMM paths, the direct kernels (few
 * channels only), then cuDNN's (-1 on a failure). */
static int candidates(CudaEngine *e, ConvShape s, int dir, int *impl, int *algo) {
    int n = 0;
    if (e->conv_mode != CU_CONV_CUDNN) {
        impl[n] = IMPL_GEMM, algo[n++] = 0;
        if (dir == CU_DIR_FILTER) impl[n] = IMPL_GEMM_SPLIT, algo[n++] = 0;
        if (cu_conv_direct_fits(s)) impl[n] = IMPL_DIRECT, algo[n++] = 0;
    }
    int ids[MAX_CANDIDATES];
    int m = cu_cudnn_built() ? cu_cudnn_candidates(e, dir, s, ids, MAX_CANDIDATES - n) : 0;
    if (m < 0) return -1;
    for (int i = 0; i < m; i++) impl[n] = IMPL_CUDNN, algo[n++] = ids[i];
    return n;
}

/* "gemm", "gemm_split" (weight gradient only), "direct" (few channels only) or "cudnn:N",
 * for one of the candidates */
static int parse_value(const char *v, int dir, const int *impl, const int *algo, int n, int *oi, int *oa) {
    int want_impl, want_algo = 0;
    char tail;
    if (strcmp(v, "gemm") == 0)
        want_impl = IMPL_GEMM;
    else if (strcmp(v, "gemm_split") == 0 && dir == CU_DIR_FILTER)
        want_impl = IMPL_GEMM_SPLIT;
    else if (strcmp(v, "direct") == 0)
        want_impl = IMPL_DIRECT;
    else if (sscanf(v, "cudnn:%d%c", &want_algo, &tail) == 1)
        want_impl = IMPL_CUDNN;
    else
        return 0;
    for (int i = 0; i < n; i++)
        if (impl[i] == want_impl && algo[i] == want_algo) {
            *oi = want_impl;
            *oa = want_algo;
            return 1;
        }
    return 0;
}

static int run_one(CudaEngine *e, int dir, ConvShape s, int impl, int algo, int trial, float *out, const float *a,
                   const float *b) {
    if (impl == IMPL_CUDNN) return cu_cudnn_dir(e, dir, algo, trial, s, out, a, b);
    if (impl == IMPL_DIRECT) {
        cu_conv_direct_dir(e, dir, s, out, a, b);
        return e->status ? -1 : 0;
    }
    cu_conv_gemm_dir(e, dir, impl == IMPL_GEMM_SPLIT, s, out, a, b);
    return e->status ? -1 : 0;
}

static size_t out_floats(ConvShape s, int dir) {
    const size_t Ho = (size_t)(s.H + 2 * (s.k / 2) - s.k) / s.stride + 1, Wo = (size_t)(s.W + 2 * (s.k / 2) - s.k) / s.stride + 1;
    if (dir == CU_DIR_FWD) return (size_t)s.B * s.Cout * Ho * Wo;
    if (dir == CU_DIR_DATA) return (size_t)s.B * s.Cin * s.H * s.W;
    return (size_t)s.Cout * s.Cin * s.k * s.k;
}

/* Times every candidate on the op's inputs into a scratch output; the index of the
 * fastest, -1 after a failure. */
static int measure(CudaEngine *e, int dir, ConvShape s, const int *impl, const int *algo, int n, const float *a,
                   const float *b) {
    float *tmp = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    const size_t bytes = out_floats(s, dir) * sizeof(float);
    if (cu_check(e, cudaMalloc((void **)&tmp, bytes), "allocating the convolution timing buffer") ||
        cu_check(e, cudaMemsetAsync(tmp, 0, bytes, e->stream), "clearing the convolution timing buffer") ||
        cu_check(e, cudaEventCreate(&t0), "creating timing events") ||
        cu_check(e, cudaEventCreate(&t1), "creating timing events")) {
        cudaFree(tmp);
        if (t0) cudaEventDestroy(t0);
        return -1;
    }
    int best = -1;
    float best_ms = 0;
    for (int i = 0; i < n && !e->status; i++) {
        if (run_one(e, dir, s, impl[i], algo[i], 1, tmp, a, b)) continue; /* warm-up; a failing cuDNN one drops out */
        cu_check(e, cudaEventRecord(t0, e->stream), "timing a convolution");
        int ok = 1;
        for (int r = 0; r < REPS && ok; r++) ok = run_one(e, dir, s, impl[i], algo[i], 1, tmp, a, b) == 0;
        cu_check(e, cudaEventRecord(t1, e->stream), "timing a convolution");
        float ms = 0;
        if (!e->status && !cu_check(e, cudaEventSynchronize(t1), "timing a convolution") &&
            !cu_check(e, cudaEventElapsedTime(&ms, t0, t1), "timing a convolution") && ok &&
            (best < 0 || ms < best_ms)) {
            best = i;
            best_ms = ms;
        }
    }
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaStreamSynchronize(e->stream);
    cudaFree(tmp);
    if (best < 0 && !e->status)
        cu_fail(e, D2C_ERR_FAIL, "cuda: no convolution algorithm ran for conv%dx%d/%d %d->%d at %dx%d", s.k, s.k, s.stride,
                s.Cin, s.Cout, s.H, s.W);
    return e->status ? -1 : best;
}

/* The choice of (s, dir): from the file, or measured and written. 0 when fine. */
static int resolve(CudaEngine *e, Choices *c, ConvShape s, int dir, const float *a, const float *b, Choice *out) {
    int impl[MAX_CANDIDATES], algo[MAX_CANDIDATES];
    int n = candidates(e, s, dir, impl, algo);
    if (n < 0) return -1;
    if (n == 0) return cu_fail(e, D2C_ERR_FAIL, "cuda: no convolution algorithm for conv%dx%d/%d", s.k, s.k, s.stride);
    char key[128], val[32];
    key_of(key, sizeof key, s, dir);
    const char *v = algo_cache_get(c->file, key);
    if (v && parse_value(v, dir, impl, algo, n, &out->impl, &out->algo)) return 0;
    const int unusable = v != NULL;
    if (v) warn_msg("algorithm cache: \"%s\" for %s is not a choice here; measuring again", v, key);
    int best = measure(e, dir, s, impl, algo, n, a, b);
    if (best < 0) return -1;
    value_of(val, sizeof val, impl[best], algo[best]);
    v = algo_cache_put(c->file, key, val, unusable);
    /* another process may have written this shape first: its choice, if it is one here */
    if (!parse_value(v, dir, impl, algo, n, &out->impl, &out->algo)) {
        out->impl = impl[best];
        out->algo = algo[best];
    }
    return 0;
}

void cu_conv_choice_run(CudaEngine *e, int dir, ConvShape s, float *out, const float *a, const float *b) {
    if (e->status) return;
    Choices *c = choices(e);
    if (!c) return;
    unsigned h = hash_of(s, dir) % SLOTS;
    Choice *slot = NULL;
    for (int probe = 0; probe < SLOTS; probe++) {
        Choice *t = &c->slot[(h + probe) % SLOTS];
        if (!t->used || same(t, s, dir)) {
            slot = t;
            break;
        }
    }
    Choice ch;
    if (slot && slot->used) {
        ch = *slot;
    } else {
        memset(&ch, 0, sizeof ch);
        ch.s = s;
        ch.dir = dir;
        if (resolve(e, c, s, dir, a, b, &ch)) return;
        ch.used = 1;
        if (slot)
            *slot = ch;
        else if (!c->full_warned) {
            c->full_warned = 1;
            warn_msg("cuda: more than %d convolution shapes; the others are looked up in the file each time", SLOTS);
        }
    }
    run_one(e, dir, s, ch.impl, ch.algo, 0, out, a, b);
}
