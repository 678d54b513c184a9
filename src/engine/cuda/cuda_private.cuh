/* What the CUDA backend's .cu files share: the engine's state, error recording, launch
 * shapes, scratch buffers, the fixed-order block reduction and row-major cuBLAS GEMMs.
 * Not seen outside src/engine/cuda. */
#ifndef D2C_ENGINE_CUDA_PRIVATE_CUH
#define D2C_ENGINE_CUDA_PRIVATE_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "core/status.h"
}
#include "engine/cuda/cuda_engine.h"

#define CU_STAGE_SLOTS 16 /* more than the uploads of one train step, so none waits within a step */
#define CU_STAGE_MAX ((size_t)64 << 20) /* larger uploads are copied directly, then waited for */

typedef struct CuProfile CuProfile;

struct CudaEngine {
    int device;
    char name[256];
    double peak_gflops;   /* cu_peak_gflops */
    cudaStream_t stream;
    cublasHandle_t blas;
    int status;     /* D2C_OK, or the first failure */
    char msg[512];  /* its message, re-recorded by cu_sync on the calling thread */
    /* scratch for one op at a time (ops run in stream order, so reuse is safe) */
    float *scratch;
    size_t scratch_cap;   /* floats */
    int64_t *idx;         /* uploaded index arrays */
    size_t idx_cap;       /* values */
    double *red;          /* reduction partials and results */
    size_t red_cap;       /* doubles */
    struct {              /* pinned staging slots for uploads (engine.cu, stage_upload) */
        void *buf;
        size_t cap;
        cudaEvent_t done; /* recorded after the slot's last copy */
        int used;
    } stage[CU_STAGE_SLOTS];
    int stage_next;
    int tf32;             /* D2C_CUDA_TF32=1: cuBLAS (and cuDNN) may use TF32 tensor cores */
    int conv_mode;        /* CU_CONV_*: which convolutions go through cuDNN (D2C_CUDA_CONV) */
    int conv_algo;        /* CU_ALGO_*: how the convolution algorithms are chosen (D2C_CUDA_CONV_ALGO) */
    char algo_path[1024]; /* the cache file of CU_ALGO_CACHED ("": none; D2C_CUDA_ALGO_CACHE) */
    void *cudnn;          /* the cuDNN state (cudnn/conv_cudnn.cu), made on first use */
    void *choices;        /* CU_ALGO_CACHED's choices per shape and direction (conv_choice.cu) */
    int graph_on;         /* D2C_CUDA_GRAPH not 0 (and not profiling): graph_run captures (graph.cu) */
    int graph_warned;     /* a failed capture has been reported (once per engine) */
    void *graphs;         /* graph.cu's keys and graphs, made on first use */
    void *graph_cur;      /* the key whose uploads are being recorded (graph_mode 1) or captured (2) */
    int graph_mode;
    unsigned buf_gen;     /* bumped when a scratch buffer moves: graphs captured before are stale */
    CuProfile *prof;      /* D2C_CUDA_PROFILE=1: the op timings (profile.cu), made on first use */
    int prof_off;         /* 1: not profiling (the variable is not set, or the events failed) */
};

/* D2C_CUDA_CONV: gemm = im2col + cuBLAS for every convolution; cudnn = cuDNN for every one;
 * auto (the default when cuDNN is built) = cuDNN for 3x3 and im2col + cuBLAS for 1x1, the
 * faster of the two per kernel size as gpu_ops measured on an H200 (docs/CUDA.md). */
enum { CU_CONV_GEMM = 0, CU_CONV_CUDNN = 1, CU_CONV_AUTO = 2 };
static inline int cu_conv_uses_cudnn(const CudaEngine *e, int k) {
    return e->conv_mode == CU_CONV_CUDNN || (e->conv_mode == CU_CONV_AUTO && k == 3);
}

/* D2C_CUDA_CONV_ALGO: heuristic = cuDNN's heuristics (conv_mode decides cuDNN or cuBLAS by
 * kernel size); find = cuDNN's cudnnFind* timing, every run again; cached (the default) =
 * per shape and direction the fastest of cuDNN's deterministic algorithms and d2c's own
 * im2col + cuBLAS paths (and direct kernels for few channels), measured once and kept in
 * a file (conv_choice.cu). */
enum { CU_ALGO_HEURISTIC = 0, CU_ALGO_FIND = 1, CU_ALGO_CACHED = 2 };
/* A convolution's three directions; the operands of each (conv_choice.cu, cudnn/):
 * FWD: out = y (overwritten), a = x, b = w; DATA: out = dx (+=), a = dy, b = w;
 * FILTER: out = dw (+=), a = dy, b = x. */
enum { CU_DIR_FWD = 0, CU_DIR_DATA = 1, CU_DIR_FILTER = 2 };
static inline int cu_conv_cached(const CudaEngine *e) {
    return e->conv_algo == CU_ALGO_CACHED && e->conv_mode != CU_CONV_GEMM;
}

/* Records a failure (the first one wins) and returns its status. */
int cu_fail(CudaEngine *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records err (when not cudaSuccess) as "cuda: what: <error string>"; returns 0 when fine. */
int cu_check(CudaEngine *e, cudaError_t err, const char *what);
int cu_check_blas(CudaEngine *e, cublasStatus_t st, const char *what);
/* After a kernel launch: records a launch failure. */
#define CU_LAUNCHED(e, name) cu_check((e), cudaGetLastError(), (name))

/* Scratch of at least `floats` floats (grows, never shrinks; NULL after a failure). */
float *cu_scratch(CudaEngine *e, size_t floats);
/* The B host values of idx uploaded (device copy valid until the next upload). */
const int64_t *cu_upload_idx(CudaEngine *e, const int64_t *host_idx, int B);
/* At least n doubles of reduction space. */
double *cu_red(CudaEngine *e, size_t n);

/* ---- launch shapes */
#define CU_THREADS 256
static inline unsigned cu_blocks(size_t n) {
    size_t b = (n + CU_THREADS - 1) / CU_THREADS;
    const size_t cap = 65536; /* grid-stride loops cover the rest */
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}
#define CU_FOR(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* Row-wise launches for tensors seen as (rows, cols), cols contiguous: blockIdx.y walks the
 * rows and the x threads the columns (both grid-stride), so the kernels split an index
 * with 32-bit arithmetic per row instead of 64-bit division per value. Blocks are as
 * narrow as the rows (32 threads for N = 49). */
typedef struct {
    dim3 grid, block;
} CuLaunch;
static inline CuLaunch cu_rows(size_t rows, size_t cols) {
    unsigned t = cols >= 256 ? 256u : (unsigned)((cols + 31) / 32 * 32);
    if (t < 32) t = 32;
    size_t bx = (cols + t - 1) / t, by = rows;
    CuLaunch l;
    l.block = dim3(t);
    l.grid = dim3((unsigned)(bx < 1 ? 1 : bx > 65535 ? 65535 : bx), (unsigned)(by < 1 ? 1 : by > 65535 ? 65535 : by));
    return l;
}
#define CU_ROWS(r, rows) for (unsigned r = blockIdx.y; r < (unsigned)(rows); r += gridDim.y)
#define CU_COLS(c, cols) \
    for (unsigned c = blockIdx.x * blockDim.x + threadIdx.x; c < (unsigned)(cols); c += gridDim.x * blockDim.x)
#define CU_LAUNCH(l) <<<(l).grid, (l).block, 0, e->stream>>>

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024) in a fixed order:
 * shuffles within each warp, then warp 0 over the warps' sums. Every thread gets the
 * result. shm holds 32 doubles. Deterministic: the order depends only on blockDim. */
__device__ __forceinline__ double cu_block_sum(double v, double *shm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads(); /* shm may still be read by a previous call */
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? shm[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) shm[0] = v;
    }
    __syncthreads();
    return shm[0];
}

/* The sums of a and b over the block at once (blockDim.x a multiple of 32, at most 1024),
 * in a fixed order: shuffles within each warp, then every thread adds the warps' sums in
 * warp order (one barrier round for both). *a and *b get the results in every thread.
 * shm holds 64 doubles. Deterministic: the order depends only on blockDim. */
__device__ __forceinline__ void cu_block_sum2(double *a, double *b, double *shm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    double va = *a, vb = *b;
    for (int o = 16; o > 0; o >>= 1) {
        va += __shfl_down_sync(0xffffffffu, va, o);
        vb += __shfl_down_sync(0xffffffffu, vb, o);
    }
    __syncthreads(); /* shm may still be read by a previous call */
    if (lane == 0) {
        shm[warp] = va;
        shm[32 + warp] = vb;
    }
    __syncthreads();
    va = 0.0, vb = 0.0;
    for (int w = 0; w < warps; w++) {
        va += shm[w];
        vb += shm[32 + w];
    }
    *a = va, *b = vb;
}

__device__ __forceinline__ float cu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- row-major GEMMs through column-major cuBLAS:
 * C (M, N) = alpha op(A) (M, K) @ op(B) (K, N) + beta C, every matrix row-major with its
 * leading dimension; the batched form strides each operand by the given count of floats. */
void cu_gemm(CudaEngine *e, int ta, int tb, int M, int N, int K, float alpha, const float *A,
             int lda, const float *B, int ldb, float beta, float *C, int ldc);
void cu_gemm_batched(CudaEngine *e, int ta, int tb, int M, int N, int K, float alpha,
                     const float *A, int lda, long long sa, const float *B, int ldb, long long sb,
                     float beta, float *C, int ldc, long long sc, int count);

/* ---- cuDNN convolutions (cudnn/conv_cudnn.cu, or cudnn/stub.cu in a build without
 * cuDNN): y = conv(x, w) without bias; dx += ..., dw += ... (either may be NULL). */
int cu_cudnn_built(void);
void cu_cudnn_destroy(CudaEngine *e);
void cu_cudnn_conv_forward(CudaEngine *e, float *y, const float *x, const float *w, ConvShape s);
void cu_cudnn_conv_backward(CudaEngine *e, float *dx, float *dw, const float *dy, const float *x, const float *w,
                            ConvShape s);

/* Direction dir of the convolution s (operands as for CU_DIR_*) by im2col + cuBLAS (conv.cu);
 * split (FILTER only): per-image weight gradients by one strided-batched GEMM, then a
 * fixed-order sum over the images, instead of one GEMM over the whole chunk. */
void cu_conv_gemm_dir(CudaEngine *e, int dir, int split, ConvShape s, float *out, const float *a, const float *b);
/* Direction dir of s by d2c's direct kernels for few channels (conv_direct.cu; operands and
 * conventions as cu_conv_gemm_dir): fits says whether s is one (Cin <= 4 or Cout <= 4,
 * k <= 3); a shape that is not fails. */
int cu_conv_direct_fits(ConvShape s);
void cu_conv_direct_dir(CudaEngine *e, int dir, ConvShape s, float *out, const float *a, const float *b);
/* cuDNN by algorithm (cudnn/): the deterministic algorithms of direction dir for s within
 * the workspace limit, at most cap of them into algos (-1 after a failure); one direction
 * with algorithm algo (trial: a failure returns -1 without being recorded); the version
 * (0 without cuDNN). */
int cu_cudnn_candidates(CudaEngine *e, int dir, ConvShape s, int *algos, int cap);
int cu_cudnn_dir(CudaEngine *e, int dir, int algo, int trial, ConvShape s, float *out, const float *a,
                 const float *b);
size_t cu_cudnn_version(void);
/* CU_ALGO_CACHED (conv_choice.cu): direction dir of s by the choice for its shape, looked up,
 * read from the cache file, or measured (and written) on first use. */
void cu_conv_choice_run(CudaEngine *e, int dir, ConvShape s, float *out, const float *a, const float *b);
void cu_conv_choice_destroy(CudaEngine *e);

/* graph.cu: stage_upload's hook while a key records or captures (1: handled there), and
 * the engine's teardown */
int cu_graph_upload(CudaEngine *e, void *dst, const void *src, size_t bytes);
void cu_graph_destroy(CudaEngine *e);

/* reduce.cu: deterministic batch sums (fixed orders, double partials, added to out):
 * out[c] += sum over b, p of x (B, C, N); out[j] += sum over i of x (rows, cols). */
void cu_channel_sums(CudaEngine *e, float *out, const float *x, int B, int C, int N);
void cu_column_sums(CudaEngine *e, float *out, const float *x, size_t rows, size_t cols);

/* sum over all i < n of f(i) in double, in a fixed order (cu_reduce.cu's two passes);
 * the result lands in *out (device). */
void cu_sum_sq_diff(CudaEngine *e, double *out, const float *x, const float *y, size_t n);

#endif
