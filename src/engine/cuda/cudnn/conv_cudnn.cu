/* Convolutions through cuDNN (its legacy convolution API), the alternative to im2col +
 * cuBLAS that D2C_CUDA_CONV=cudnn selects (conv.cu calls in here; the bias stays there).
 * Built when CMake finds cuDNN (cmake/cuda.cmake); otherwise cudnn/stub.cu.
 *
 * Per shape (cached, at most CACHE_SIZE shapes), the algorithms are cuDNN's heuristic
 * choices (_v7) restricted to deterministic ones (CUDNN_DETERMINISTIC: no atomics, so dx
 * and dw have the same bits run to run) that need at most WS_LIMIT bytes of workspace, and
 * to plain FMA maths unless D2C_CUDA_TF32=1 (the descriptor's math type is
 * CUDNN_FMA_MATH: no TF32, as for cuBLAS). Backward accumulates (beta = 1).
 * D2C_CUDA_CONV_ALGO=find ranks the algorithms by running each once per shape
 * (cudnnFind*, on buffers cuDNN allocates itself), under the same restrictions: the fastest
 * deterministic one as measured. Each algorithm is deterministic, but which one wins can
 * change with timing noise from run to run, and with it the last bits of the results, so
 * neither is the default: D2C_CUDA_CONV_ALGO=cached (conv_choice.cu) measures per shape and
 * direction once, among the algorithms cu_cudnn_candidates lists and d2c's own GEMM paths,
 * keeps the winner in a file, and runs it through cu_cudnn_dir. */
#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_private.cuh"

#define CACHE_SIZE 64
#define WS_LIMIT ((size_t)1 << 30)

typedef struct {
    ConvShape s;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filter;
    size_t ws_fwd, ws_data, ws_filter;
} Algos;

typedef struct {
    cudnnHandle_t h;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    Algos cache[CACHE_SIZE];
    int cached;
} Cudnn;

int cu_cudnn_built(void) { return 1; }

static int check(CudaEngine *e, cudnnStatus_t st, const char *what) {
    if (st == CUDNN_STATUS_SUCCESS) return 0;
    return cu_fail(e, D2C_ERR_FAIL, "cudnn: %s: %s", what, cudnnGetErrorString(st));
}

void cu_cudnn_destroy(CudaEngine *e) {
    Cudnn *c = (Cudnn *)e->cudnn;
    if (!c) return;
    if (c->conv) cudnnDestroyConvolutionDescriptor(c->conv);
    if (c->w) cudnnDestroyFilterDescriptor(c->w);
    if (c->y) cudnnDestroyTensorDescriptor(c->y);
    if (c->x) cudnnDestroyTensorDescriptor(c->x);
    if (c->h) cudnnDestroy(c->h);
    free(c);
    e->cudnn = NULL;
}

static Cudnn *state(CudaEngine *e) {
    if (e->status) return NULL;
    if (e->cudnn) return (Cudnn *)e->cudnn;
    Cudnn *c = (Cudnn *)calloc(1, sizeof *c);
    if (!c) {
        cu_fail(e, D2C_ERR_FAIL, "cudnn: out of host memory");
        return NULL;
    }
    e->cudnn = c;
    if (check(e, cudnnCreate(&c->h), "creating the handle") || check(e, cudnnSetStream(c->h, e->stream), "setting the stream") ||
        check(e, cudnnCreateTensorDescriptor(&c->x), "descriptors") ||
        check(e, cudnnCreateTensorDescriptor(&c->y), "descriptors") ||
        check(e, cudnnCreateFilterDescriptor(&c->w), "descriptors") ||
        check(e, cudnnCreateConvolutionDescriptor(&c->conv), "descriptors"))
        return NULL;
    return c;
}

/* The descriptors for shape s; 0 when fine. */
static int describe(CudaEngine *e, Cudnn *c, ConvShape s) {
    const int pad = s.k / 2, Ho = (s.H + 2 * pad - s.k) / s.stride + 1, Wo = (s.W + 2 * pad - s.k) / s.stride + 1;
    return check(e, cudnnSetTensor4dDescriptor(c->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.B, s.Cin, s.H, s.W), "x") ||
           check(e, cudnnSetTensor4dDescriptor(c->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.B, s.Cout, Ho, Wo), "y") ||
           check(e, cudnnSetFilter4dDescriptor(c->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.Cout, s.Cin, s.k, s.k), "w") ||
           check(e, cudnnSetConvolution2dDescriptor(c->conv, pad, pad, s.stride, s.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT),
                 "convolution") ||
           check(e, cudnnSetConvolutionMathType(c->conv, e->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH), "math type");
}

/* the first heuristic choice that ran, is deterministic, fits WS_LIMIT and (without TF32)
 * reports FMA maths; failing that, the first deterministic one (the descriptor's math type,
 * CUDNN_FMA_MATH without TF32, governs how it runs); -1 when there is none (P: any of
 * cuDNN's three perf-result types) */
/* an algorithm d2c may run: it ran, is deterministic and fits WS_LIMIT */
template <typename P> static bool usable(const P &perf) {
    return perf.status == CUDNN_STATUS_SUCCESS && perf.determinism == CUDNN_DETERMINISTIC && perf.memory <= WS_LIMIT;
}

template <typename P> static int pick(const P *perf, int n, int tf32) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            if (usable(perf[i]) && (tf32 || pass == 1 || perf[i].mathType == CUDNN_FMA_MATH)) return i;
    return -1;
}

/* the usable algorithms of a listing, each once, in cuDNN's order, at most cap */
template <typename P> static int keep_usable(const P *perf, int n, int *algos, int cap) {
    int out = 0;
    for (int i = 0; i < n && out < cap; i++) {
        if (!usable(perf[i])) continue;
        int seen = 0;
        for (int j = 0; j < out; j++) seen |= algos[j] == (int)perf[i].algo;
        if (!seen) algos[out++] = (int)perf[i].algo;
    }
    return out;
}

/* The cached algorithms of shape s (descriptors set for it), or NULL after a failure. */
static const Algos *algos_for(CudaEngine *e, ConvShape s, Cudnn **out) {
    Cudnn *c = state(e);
    if (!c || describe(e, c, s)) return NULL;
    *out = c;
    for (int i = 0; i < c->cached; i++)
        if (memcmp(&c->cache[i].s, &s, sizeof s) == 0) return &c->cache[i];
    Algos a;
    memset(&a, 0, sizeof a);
    a.s = s;
    cudnnConvolutionFwdAlgoPerf_t pf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnConvolutionBwdDataAlgoPerf_t pd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t pw[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int nf = 0, nd = 0, nw = 0;
    if (e->conv_algo == CU_ALGO_FIND) {
        if (check(e, cudnnFindConvolutionForwardAlgorithm(c->h, c->x, c->w, c->conv, c->y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &nf, pf),
                  "timing the forward algorithms") ||
            check(e, cudnnFindConvolutionBackwardDataAlgorithm(c->h, c->w, c->y, c->conv, c->x,
                                                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &nd, pd),
                  "timing the backward-data algorithms") ||
            check(e, cudnnFindConvolutionBackwardFilterAlgorithm(c->h, c->x, c->y, c->conv, c->w,
                                                                 CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &nw, pw),
                  "timing the backward-filter algorithms"))
            return NULL;
    } else if (check(e, cudnnGetConvolutionForwardAlgorithm_v7(c->h, c->x, c->w, c->conv, c->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                        &nf, pf),
              "choosing the forward algorithm") ||
        check(e, cudnnGetConvolutionBackwardDataAlgorithm_v7(c->h, c->w, c->y, c->conv, c->x,
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &nd, pd),
              "choosing the backward-data algorithm") ||
        check(e, cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->h, c->x, c->y, c->conv, c->w,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &nw, pw),
              "choosing the backward-filter algorithm"))
        return NULL;
    int f = pick(pf, nf, e->tf32), d = pick(pd, nd, e->tf32), w = pick(pw, nw, e->tf32);
    if (f < 0 || d < 0 || w < 0) {
        cu_fail(e, D2C_ERR_FAIL, "cudnn: no deterministic algorithm for the convolution %dx%d/%d %d->%d at %dx%d", s.k,
                s.k, s.stride, s.Cin, s.Cout, s.H, s.W);
        return NULL;
    }
    a.fwd = pf[f].algo;
    a.data = pd[d].algo;
    a.filter = pw[w].algo;
    if (check(e, cudnnGetConvolutionForwardWorkspaceSize(c->h, c->x, c->w, c->conv, c->y, a.fwd, &a.ws_fwd), "workspace") ||
        check(e, cudnnGetConvolutionBackwardDataWorkspaceSize(c->h, c->w, c->y, c->conv, c->x, a.data, &a.ws_data),
              "workspace") ||
        check(e, cudnnGetConvolutionBackwardFilterWorkspaceSize(c->h, c->x, c->y, c->conv, c->w, a.filter, &a.ws_filter),
              "workspace"))
        return NULL;
    if (c->cached == CACHE_SIZE) c->cached = 0; /* more shapes than slots: start over */
    c->cache[c->cached] = a;
    return &c->cache[c->cached++];
}

static float *workspace(CudaEngine *e, size_t bytes) {
    return cu_scratch(e, (bytes + sizeof(float) - 1) / sizeof(float) + 1);
}

void cu_cudnn_conv_forward(CudaEngine *e, float *y, const float *x, const float *w, ConvShape s) {
    Cudnn *c = NULL;
    const Algos *a = algos_for(e, s, &c);
    float *ws = a ? workspace(e, a->ws_fwd) : NULL;
    if (!ws) return;
    const float one = 1.0f, zero = 0.0f;
    check(e, cudnnConvolutionForward(c->h, &one, c->x, x, c->w, w, c->conv, a->fwd, ws, a->ws_fwd, &zero, c->y, y),
          "convolution forward");
}

void cu_cudnn_conv_backward(CudaEngine *e, float *dx, float *dw, const float *dy, const float *x,
                                       const float *w, ConvShape s) {
    Cudnn *c = NULL;
    const Algos *a = algos_for(e, s, &c);
    size_t need = a ? (a->ws_data > a->ws_filter ? a->ws_data : a->ws_filter) : 0;
    float *ws = a ? workspace(e, need) : NULL;
    if (!ws) return;
    const float one = 1.0f;
    if (dw &&
        check(e, cudnnConvolutionBackwardFilter(c->h, &one, c->x, x, c->y, dy, c->conv, a->filter, ws, a->ws_filter, &one,
                                                c->w, dw),
              "convolution backward (filter)"))
        return;
    if (dx)
        check(e, cudnnConvolutionBackwardData(c->h, &one, c->w, w, c->y, dy, c->conv, a->data, ws, a->ws_data, &one, c->x,
                                              dx),
              "convolution backward (data)");
}

/* ---------------------------------------------------------------- by algorithm (cached mode) */

size_t cu_cudnn_version(void) { return cudnnGetVersion(); }

/* cuDNN's _v7 listing of every algorithm of the direction (status, determinism, memory),
 * filtered: ran, deterministic, within WS_LIMIT; each algorithm once, in cuDNN's order. */
int cu_cudnn_candidates(CudaEngine *e, int dir, ConvShape s, int *algos, int cap) {
    Cudnn *c = state(e);
    if (!c || describe(e, c, s)) return -1;
    int n = 0;
    if (dir == CU_DIR_FWD) {
        cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        if (check(e, cudnnGetConvolutionForwardAlgorithm_v7(c->h, c->x, c->w, c->conv, c->y,
                                                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, p),
                  "listing the forward algorithms"))
            return -1;
        return keep_usable(p, n, algos, cap);
    }
    if (dir == CU_DIR_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        if (check(e, cudnnGetConvolutionBackwardDataAlgorithm_v7(c->h, c->w, c->y, c->conv, c->x,
                                                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, p),
                  "listing the backward-data algorithms"))
            return -1;
        return keep_usable(p, n, algos, cap);
    }
    cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    if (check(e, cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->h, c->x, c->y, c->conv, c->w,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, p),
              "listing the backward-filter algorithms"))
        return -1;
    return keep_usable(p, n, algos, cap);
}

/* A failure of a trial run is not recorded: the candidate is dropped instead. */
static int check_dir(CudaEngine *e, int trial, cudnnStatus_t st, const char *what) {
    if (st == CUDNN_STATUS_SUCCESS) return 0;
    if (trial) return -1;
    return check(e, st, what) ? -1 : 0;
}

int cu_cudnn_dir(CudaEngine *e, int dir, int algo, int trial, ConvShape s, float *out, const float *a,
                 const float *b) {
    Cudnn *c = state(e);
    if (!c || describe(e, c, s)) return -1;
    size_t ws_bytes = 0;
    cudnnStatus_t st;
    if (dir == CU_DIR_FWD)
        st = cudnnGetConvolutionForwardWorkspaceSize(c->h, c->x, c->w, c->conv, c->y, (cudnnConvolutionFwdAlgo_t)algo,
                                                     &ws_bytes);
    else if (dir == CU_DIR_DATA)
        st = cudnnGetConvolutionBackwardDataWorkspaceSize(c->h, c->w, c->y, c->conv, c->x,
                                                          (cudnnConvolutionBwdDataAlgo_t)algo, &ws_bytes);
    else
        st = cudnnGetConvolutionBackwardFilterWorkspaceSize(c->h, c->x, c->y, c->conv, c->w,
                                                            (cudnnConvolutionBwdFilterAlgo_t)algo, &ws_bytes);
    if (check_dir(e, trial, st, "workspace")) return -1;
    float *ws = workspace(e, ws_bytes);
    if (!ws) return -1;
    const float one = 1.0f, zero = 0.0f;
    if (dir == CU_DIR_FWD)
        st = cudnnConvolutionForward(c->h, &one, c->x, a, c->w, b, c->conv, (cudnnConvolutionFwdAlgo_t)algo, ws,
                                     ws_bytes, &zero, c->y, out);
    else if (dir == CU_DIR_DATA)
        st = cudnnConvolutionBackwardData(c->h, &one, c->w, b, c->y, a, c->conv, (cudnnConvolutionBwdDataAlgo_t)algo,
                                          ws, ws_bytes, &one, c->x, out);
    else
        st = cudnnConvolutionBackwardFilter(c->h, &one, c->x, b, c->y, a, c->conv,
                                            (cudnnConvolutionBwdFilterAlgo_t)algo, ws, ws_bytes, &one, c->w, out);
    return check_dir(e, trial, st,
                     dir == CU_DIR_FWD    ? "convolution forward"
                     : dir == CU_DIR_DATA ? "convolution backward (data)"
                                          : "convolution backward (filter)");
}
